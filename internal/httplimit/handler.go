package httplimit

import (
	"net/http"
	"strconv"
	"time"
)

// InFlight answers 503 with Retry-After when max requests are already
// being served, instead of queueing them. max 0 means no cap.
func InFlight(h http.Handler, max int) http.Handler {
	if max <= 0 {
		return h
	}
	slots := make(chan struct{}, max)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case slots <- struct{}{}:
		default:
			w.Header().Set("Retry-After", "1")
			http.Error(w, "busy: too many requests in flight; retry in a second", http.StatusServiceUnavailable)
			return
		}
		defer func() { <-slots }()
		h.ServeHTTP(w, r)
	})
}

// BodyLimit caps every request body at def bytes, or at what limit returns
// for the request when it returns more than 0: a read past the cap fails
// and the server answers 413 to a handler that reports it (see
// TooLarge). Routes that take large uploads name their own cap.
func BodyLimit(h http.Handler, def int64, limit func(*http.Request) int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := def
		if limit != nil {
			if m := limit(r); m > 0 {
				n = m
			}
		}
		if r.ContentLength > n {
			http.Error(w, "request body of "+strconv.FormatInt(r.ContentLength, 10)+" bytes is over the limit of "+strconv.FormatInt(n, 10), http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, n)
		h.ServeHTTP(w, r)
	})
}

// Timeouts are the server-side timers of an HTTP server.
type Timeouts struct {
	// ReadHeader bounds reading a request's headers.
	ReadHeader time.Duration
	// Read bounds reading a whole request, body included. Handlers that
	// take long uploads from authenticated clients extend it with
	// http.ResponseController.SetReadDeadline.
	Read time.Duration
	// Idle bounds how long a keep-alive connection waits for its next
	// request.
	Idle time.Duration
}

// DefaultTimeouts suit a node's API and binary cache.
func DefaultTimeouts() Timeouts {
	return Timeouts{ReadHeader: 10 * time.Second, Read: 2 * time.Minute, Idle: 90 * time.Second}
}

// Server returns an http.Server for h with the timeouts set. It sets no
// WriteTimeout: that would cut long downloads; the Listener's idle
// deadline drops clients that stop reading instead.
func Server(h http.Handler, t Timeouts) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: t.ReadHeader, ReadTimeout: t.Read, IdleTimeout: t.Idle, MaxHeaderBytes: 64 << 10}
}
