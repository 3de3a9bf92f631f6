package builder

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/drvmesh/drvmesh/builder/worker"
)

// DaemonPool keeps long-lived connections to one daemon, at most size in
// use at once (the builder's max-jobs). A connection that broke (an
// error, a timeout, a canceled build) is closed when handed back, and a
// later Get dials a new one.
type DaemonPool struct {
	dial  func(context.Context) (io.ReadWriteCloser, error)
	slots chan struct{} // one token per connection in use

	mu     sync.Mutex
	idle   []*worker.Conn
	all    map[*worker.Conn]struct{} // idle and in use
	closed bool
	dials  int
}

// NewDaemonPool returns a pool of at most size connections made with
// dial (e.g. a Unix socket or a nix-daemon --stdio subprocess). It dials
// nothing until the first Get.
func NewDaemonPool(dial func(ctx context.Context) (io.ReadWriteCloser, error), size int) *DaemonPool {
	return &DaemonPool{
		dial:  dial,
		slots: make(chan struct{}, max(size, 1)),
		all:   make(map[*worker.Conn]struct{}),
	}
}

// Get returns a connection for the caller's sole use, waiting while size
// connections are in use; the caller hands it back with Put.
func (p *DaemonPool) Get(ctx context.Context) (*worker.Conn, error) {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for daemon connection: %w: %w", ErrCanceled, ctx.Err())
	}
	c, err := p.take(ctx)
	if err != nil {
		<-p.slots
		return nil, err
	}
	return c, nil
}

func (p *DaemonPool) take(ctx context.Context) (*worker.Conn, error) {
	p.mu.Lock()
	for len(p.idle) > 0 && !p.closed {
		c := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if !c.Broken() {
			p.mu.Unlock()
			return c, nil
		}
		delete(p.all, c)
		_ = c.Close()
	}
	closed := p.closed
	p.dials++
	p.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("get daemon connection: %w: pool closed", ErrBackend)
	}
	rwc, err := p.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("dial daemon: %w: %v", ErrBackend, err)
	}
	c, err := worker.NewConn(ctx, rwc)
	if err != nil {
		return nil, fmt.Errorf("open daemon connection: %w: %v", ErrBackend, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return nil, fmt.Errorf("get daemon connection: %w: pool closed", ErrBackend)
	}
	p.all[c] = struct{}{}
	return c, nil
}

// Put hands back a connection from Get. A broken one is closed.
func (p *DaemonPool) Put(c *worker.Conn) {
	p.mu.Lock()
	if c.Broken() || p.closed {
		delete(p.all, c)
		_ = c.Close()
	} else {
		p.idle = append(p.idle, c)
	}
	p.mu.Unlock()
	<-p.slots
}

// Close closes every connection, idle or in use (an operation in flight
// fails and the daemon stops its build). Later Gets fail.
func (p *DaemonPool) Close() error {
	p.mu.Lock()
	p.closed = true
	conns := make([]*worker.Conn, 0, len(p.all))
	for c := range p.all {
		conns = append(conns, c)
	}
	p.all = map[*worker.Conn]struct{}{}
	p.idle = nil
	p.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
	return nil
}

// dialCount is how many connections the pool has dialed (tests).
func (p *DaemonPool) dialCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dials
}
