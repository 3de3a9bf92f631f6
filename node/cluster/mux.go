package cluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// The cluster port (PORT+1) carries two protocols over one mutual-TLS
// listener: raft and node-to-node RPC (HTTP). After the handshake the
// dialler sends one byte that says which.
const (
	muxRaft byte = 'R'
	muxRPC  byte = 'H'
)

// Mux accepts mutual-TLS connections on the cluster port and hands each
// to the sub-listener its first byte names.
type Mux struct {
	ln      net.Listener
	conf    *tls.Config
	log     *slog.Logger
	subs    map[byte]*subListener
	closed  chan struct{}
	closeMu sync.Once
	// gate admits raft connections; none are admitted until it is set.
	gate atomic.Pointer[RaftGate]
	// mu orders the handshake goroutines' wg.Add before Close's wg.Wait.
	mu sync.Mutex
	wg sync.WaitGroup
}

// NewMux serves the cluster port on ln with the node's server TLS
// configuration; Serve accepts, Close stops.
func NewMux(ln net.Listener, serverConf *tls.Config, log *slog.Logger) *Mux {
	m := &Mux{ln: ln, conf: serverConf, log: log, closed: make(chan struct{}), subs: map[byte]*subListener{}}
	for _, b := range []byte{muxRaft, muxRPC} {
		m.subs[b] = &subListener{parent: m, conns: make(chan net.Conn, 16), closed: make(chan struct{})}
	}
	return m
}

// Serve accepts until the listener closes.
func (m *Mux) Serve() {
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.closed:
				return
			default:
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			m.log.Warn("cluster accept", keyErr, err)
			return
		}
		m.mu.Lock()
		select {
		case <-m.closed:
			m.mu.Unlock()
			c.Close()
			return
		default:
		}
		m.wg.Add(1)
		m.mu.Unlock()
		go func() {
			defer m.wg.Done()
			m.handshake(c)
		}()
	}
}

func (m *Mux) handshake(c net.Conn) {
	tc := tls.Server(c, m.conf)
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	var kind [1]byte
	if err := tc.Handshake(); err != nil {
		m.log.Debug("cluster handshake refused", keyRemote, c.RemoteAddr().String(), keyErr, err)
		c.Close()
		return
	}
	if _, err := io.ReadFull(tc, kind[:]); err != nil {
		tc.Close()
		return
	}
	_ = tc.SetDeadline(time.Time{})
	sub, ok := m.subs[kind[0]]
	if !ok {
		tc.Close()
		return
	}
	if kind[0] == muxRaft {
		if err := m.admitRaft(tc); err != nil {
			m.log.Warn("raft connection refused", keyRemote, c.RemoteAddr().String(), keyErr, err)
			tc.Close()
			return
		}
	}
	select {
	case sub.conns <- tc:
	case <-sub.closed:
		tc.Close()
	case <-m.closed:
		tc.Close()
	}
}

// GateRaft sets what admits raft connections (VoterGate); until it is
// set, none is admitted.
func (m *Mux) GateRaft(g RaftGate) { m.gate.Store(&g) }

// admitRaft asks the gate about the peer of a raft connection.
func (m *Mux) admitRaft(tc *tls.Conn) error {
	g := m.gate.Load()
	if g == nil {
		return fmt.Errorf("%w: raft is not running here yet", ErrNotVoter)
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return fmt.Errorf("%w: no client certificate", ErrNotMember)
	}
	return (*g)(certs[0])
}

// Close stops accepting and waits for the handshakes under way.
func (m *Mux) Close() error {
	var err error
	m.closeMu.Do(func() {
		m.mu.Lock()
		close(m.closed)
		m.mu.Unlock()
		err = m.ln.Close()
	})
	m.wg.Wait()
	return err
}

// subListener is one protocol's view of the cluster port.
type subListener struct {
	parent    *Mux
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

func (s *subListener) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.closed:
		return nil, net.ErrClosed
	case <-s.parent.closed:
		return nil, net.ErrClosed
	}
}

// Close stops this protocol's Accept; the port stays open for the other.
func (s *subListener) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	return nil
}
func (s *subListener) Addr() net.Addr { return s.parent.ln.Addr() }

// Dialer opens mutual-TLS connections to other nodes' cluster ports.
type Dialer struct {
	conf *tls.Config
}

// NewDialer dials with the client TLS configuration conf.
func NewDialer(conf *tls.Config) *Dialer { return &Dialer{conf: conf} }

// DialRaft opens a raft connection to the cluster port at addr.
func (d *Dialer) DialRaft(ctx context.Context, addr string) (net.Conn, error) {
	return d.dial(ctx, addr, muxRaft)
}

func (d *Dialer) dial(ctx context.Context, addr string, kind byte) (net.Conn, error) {
	var nd net.Dialer
	c, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(c, d.conf)
	if dl, ok := ctx.Deadline(); ok {
		_ = tc.SetDeadline(dl)
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("tls to %s: %w", addr, err)
	}
	if _, err := tc.Write([]byte{kind}); err != nil {
		c.Close()
		return nil, err
	}
	_ = tc.SetDeadline(time.Time{})
	return tc, nil
}

// RaftLayer is raft's StreamLayer over the cluster port of mux, which
// other nodes reach at advertise.
func (m *Mux) RaftLayer(advertise net.Addr, d *Dialer) raft.StreamLayer {
	return &raftLayer{sub: m.subs[muxRaft], advertise: advertise, dialer: d}
}

// RPCListener is the cluster port's listener for node-to-node RPC.
func (m *Mux) RPCListener() net.Listener { return m.subs[muxRPC] }

// raftLayer is raft's StreamLayer over the cluster port.
type raftLayer struct {
	sub       *subListener
	advertise net.Addr
	dialer    *Dialer
}

var _ raft.StreamLayer = (*raftLayer)(nil)

func (l *raftLayer) Accept() (net.Conn, error) { return l.sub.Accept() }
func (l *raftLayer) Close() error              { return nil }
func (l *raftLayer) Addr() net.Addr {
	if l.advertise != nil {
		return l.advertise
	}
	return l.sub.Addr()
}

func (l *raftLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return l.dialer.dial(ctx, string(addr), muxRaft)
}

// RPCClient is an HTTP client whose connections go to a node's cluster port
// over mutual TLS. URLs are http://CLUSTER-ADDR/path.
func (d *Dialer) RPCClient() *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return d.dial(ctx, addr, muxRPC)
		},
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     60 * time.Second,
	}
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}
