package httplimit

import (
	"io"
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

// Rule is what one request may send: at most MaxBody bytes of body, all
// of it within ReadFor of the request's start (0: no total limit), and no
// pause between two reads of the body longer than Idle (0: DefaultIdle).
type Rule struct {
	MaxBody int64
	ReadFor time.Duration
	Idle    time.Duration
}

// DefaultIdle is the longest pause in a request body that Requests allows
// when a Rule names none.
const DefaultIdle = 60 * time.Second

// Requests applies rule(r) to every request with a body: one over
// MaxBody is refused with 413 when its length is known up front, and
// otherwise the read past the cap fails (http.MaxBytesError, which
// handlers report as 413); reading the body is bounded by ReadFor and
// Idle, and once it is read to its end the read deadline is lifted, so
// the answer may take as long as it needs.
func Requests(h http.Handler, rule func(*http.Request) Rule) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ru := rule(r)
		if r.ContentLength > ru.MaxBody {
			http.Error(w, "request body of "+strconv.FormatInt(r.ContentLength, 10)+" bytes is over the limit of "+strconv.FormatInt(ru.MaxBody, 10), http.StatusRequestEntityTooLarge)
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			idle := ru.Idle
			if idle <= 0 {
				idle = DefaultIdle
			}
			b := &timedBody{rc: http.NewResponseController(w), body: http.MaxBytesReader(w, r.Body, ru.MaxBody), idle: idle}
			if ru.ReadFor > 0 {
				b.hard = time.Now().Add(ru.ReadFor)
			}
			r.Body = b
		}
		h.ServeHTTP(w, r)
	})
}

// timedBody sets the connection's read deadline before each read of a
// request body and lifts it when the body ends.
type timedBody struct {
	rc   *http.ResponseController
	body io.ReadCloser
	idle time.Duration
	hard time.Time
	done bool
}

func (b *timedBody) Read(p []byte) (int, error) {
	if b.done {
		return b.body.Read(p)
	}
	_ = b.rc.SetReadDeadline(earlier(b.hard, time.Now().Add(b.idle)))
	n, err := b.body.Read(p)
	switch {
	case err == io.EOF:
		// The whole body arrived: the answer may take its time.
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	case err != nil:
		// Too slow, too large or gone: the server must not wait for
		// the rest of the body either.
		b.done = true
		_ = b.rc.SetReadDeadline(time.Now())
	}
	return n, err
}

func (b *timedBody) Close() error { return b.body.Close() }

// Timeouts are the server-side timers of an HTTP server.
type Timeouts struct {
	// ReadHeader bounds reading a request's headers.
	ReadHeader time.Duration
	// Idle bounds how long a keep-alive connection waits for its next
	// request.
	Idle time.Duration
}

// DefaultTimeouts suit a node's API and binary cache.
func DefaultTimeouts() Timeouts {
	return Timeouts{ReadHeader: 10 * time.Second, Idle: 90 * time.Second}
}

// Server returns an http.Server for h with the timeouts set. It sets no
// ReadTimeout or WriteTimeout: those would cut long uploads and
// downloads. Requests bounds each route's reading, and the Listener's
// idle deadline drops clients that stop sending or reading.
func Server(h http.Handler, t Timeouts) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: t.ReadHeader, IdleTimeout: t.Idle, MaxHeaderBytes: 64 << 10}
}
