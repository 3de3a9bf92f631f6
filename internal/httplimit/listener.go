package httplimit

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Listener caps the connections a listener hands out: total at most, and
// perAddr from one source IP. A connection over either cap is closed at
// once (the client sees a reset), so a flood never queues behind honest
// clients. Each write gets a deadline of idle from its start, so a client
// that stops reading an answer is dropped. (Reads get none here: the
// server's own read while a handler runs would time out and cancel the
// request; Requests bounds the reading of a body instead.)
type Listener struct {
	net.Listener
	total, perAddr int
	idle           time.Duration

	mu     sync.Mutex
	open   int
	byAddr map[string]int

	refused atomic.Uint64
}

// NewListener wraps ln. A cap of 0 means no cap; idle 0 means no write
// deadline.
func NewListener(ln net.Listener, total, perAddr int, idle time.Duration) *Listener {
	return &Listener{Listener: ln, total: total, perAddr: perAddr, idle: idle, byAddr: map[string]int{}}
}

// Accept returns the next connection within the caps.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		host := hostOf(c.RemoteAddr())
		if !l.admit(host) {
			l.refused.Add(1)
			c.Close()
			continue
		}
		return &conn{Conn: c, l: l, host: host}, nil
	}
}

// Refused is how many connections were closed for being over a cap.
func (l *Listener) Refused() uint64 { return l.refused.Load() }

// Open is how many connections are open now.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

func (l *Listener) admit(host string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if (l.total > 0 && l.open >= l.total) || (l.perAddr > 0 && l.byAddr[host] >= l.perAddr) {
		return false
	}
	l.open++
	l.byAddr[host]++
	return true
}

func (l *Listener) release(host string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.byAddr[host]--; l.byAddr[host] <= 0 {
		delete(l.byAddr, host)
	}
}

func hostOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// conn releases its slot once, on the first Close, and keeps an idle
// deadline on every write: the earlier of the deadline the server set and
// idle from now.
type conn struct {
	net.Conn
	l      *Listener
	host   string
	closed atomic.Bool

	mu        sync.Mutex
	writeHard time.Time // the deadline set by the server; zero for none
}

func (c *conn) Write(p []byte) (int, error) {
	if c.l.idle > 0 {
		c.mu.Lock()
		c.Conn.SetWriteDeadline(earlier(c.writeHard, time.Now().Add(c.l.idle)))
		c.mu.Unlock()
	}
	return c.Conn.Write(p)
}

func (c *conn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.writeHard = t
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *conn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.writeHard = t
	c.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

func (c *conn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.release(c.host)
	}
	return c.Conn.Close()
}

// earlier is the earlier of a deadline that may be zero (none) and t.
func earlier(hard, t time.Time) time.Time {
	if !hard.IsZero() && hard.Before(t) {
		return hard
	}
	return t
}
