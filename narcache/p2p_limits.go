package narcache

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/pbnjay/memory"
	"golang.org/x/sys/unix"
)

// P2PLimits bounds what peers can make this node spend. A zero field
// takes its default (DefaultP2PLimits), so the zero value is a working
// configuration.
//
// Members are trusted to send only what they hold, not to be well
// behaved: a buggy or compromised member must not be able to pin all
// memory, descriptors or handler goroutines. libp2p's resource manager
// enforces the counts and the memory (its scaled defaults for everything
// not set here); the timeouts are enforced by the nar protocol itself.
type P2PLimits struct {
	// Memory is what the whole libp2p stack may reserve, mostly stream
	// receive windows. Default: an eighth of the machine's memory.
	Memory int64
	// FDs is how many file descriptors libp2p may hold. Default: half of
	// the process limit.
	FDs int
	// ConnsPerPeer caps the connections to and from one peer, in each
	// direction and in total. Default 8 (libp2p dials up to 8 addresses of
	// a peer at once).
	ConnsPerPeer int
	// StreamsPerPeer caps the streams with one peer, all protocols, in
	// each direction and in total. Default 256.
	StreamsPerPeer int
	// NarStreamsPerPeer caps the nar transfers one peer may run with this
	// node at once, in each direction. Default 64: Nix substitutes up to
	// 16 paths at once per client, and in a small mesh one peer may hold
	// all of them.
	NarStreamsPerPeer int
	// MemoryPerPeer caps what one peer's connections and streams may
	// reserve, mostly receive windows. A nar stream's window grows up to
	// 16 MiB while it carries a big file and stays smaller when this cap
	// is reached (slower, never failing), so the default, 256 MiB, lets
	// 16 transfers from one peer run at full speed.
	MemoryPerPeer int64
	// RequestTimeout is how long a peer has, after opening a nar stream,
	// to send its request (at most maxRequestLen bytes). Default 10s.
	RequestTimeout time.Duration
	// IdleTimeout cuts a nar transfer that moves no byte for this long,
	// either way: a peer that stops sending mid-file, or stops reading
	// what this node serves. The deadline is renewed as bytes move, so a
	// big nar at any speed is never cut. Default 30s.
	IdleTimeout time.Duration
	// MaxFileSize refuses a transfer announcing more bytes than this when
	// the index does not know the file's size. Default 64 GiB.
	MaxFileSize int64
}

// DefaultP2PLimits are the limits a zero P2PLimits field takes.
var DefaultP2PLimits = P2PLimits{
	ConnsPerPeer:      8,
	StreamsPerPeer:    256,
	NarStreamsPerPeer: 64,
	MemoryPerPeer:     256 << 20,
	RequestTimeout:    10 * time.Second,
	IdleTimeout:       30 * time.Second,
	MaxFileSize:       64 << 30,
}

// maxRequestLen bounds a nar request line: a FileKey is far shorter.
const maxRequestLen = 128

// withDefaults fills the zero fields.
func (l P2PLimits) withDefaults() P2PLimits {
	d := DefaultP2PLimits
	if l.Memory <= 0 {
		l.Memory = int64(memory.TotalMemory() / 8)
	}
	if l.FDs <= 0 {
		l.FDs = fdLimit() / 2
	}
	if l.ConnsPerPeer <= 0 {
		l.ConnsPerPeer = d.ConnsPerPeer
	}
	if l.StreamsPerPeer <= 0 {
		l.StreamsPerPeer = d.StreamsPerPeer
	}
	if l.NarStreamsPerPeer <= 0 {
		l.NarStreamsPerPeer = d.NarStreamsPerPeer
	}
	if l.MemoryPerPeer <= 0 {
		l.MemoryPerPeer = d.MemoryPerPeer
	}
	if l.RequestTimeout <= 0 {
		l.RequestTimeout = d.RequestTimeout
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = d.IdleTimeout
	}
	if l.MaxFileSize <= 0 {
		l.MaxFileSize = d.MaxFileSize
	}
	return l
}

// limiter builds the resource manager's limits: libp2p's defaults with
// its service limits (identify, ping, relay, hole punching), scaled to
// Memory and FDs, then the per-peer and nar protocol caps above. l must
// have its defaults filled.
func (l P2PLimits) limiter() rcmgr.Limiter {
	scaling := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&scaling)
	narStreams := rcmgr.BaseLimit{
		StreamsInbound:  l.NarStreamsPerPeer,
		StreamsOutbound: l.NarStreamsPerPeer,
		Streams:         2 * l.NarStreamsPerPeer,
		Memory:          l.MemoryPerPeer,
	}
	scaling.AddProtocolPeerLimit(NarProtocol, narStreams, rcmgr.BaseLimitIncrease{})
	concrete := scaling.Scale(l.Memory, l.FDs)
	conns, streams := rcmgr.LimitVal(l.ConnsPerPeer), rcmgr.LimitVal(l.StreamsPerPeer)
	perPeer := rcmgr.PartialLimitConfig{PeerDefault: rcmgr.ResourceLimits{
		ConnsInbound:    conns,
		ConnsOutbound:   conns,
		Conns:           conns,
		StreamsInbound:  streams,
		StreamsOutbound: streams,
		Streams:         streams,
		Memory:          rcmgr.LimitVal64(l.MemoryPerPeer),
	}}
	return rcmgr.NewFixedLimiter(perPeer.Build(concrete))
}

// fdLimit is the process's soft limit on open files, or 4096 when it
// cannot be read.
func fdLimit() int {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == 0 {
		return 4096
	}
	return int(min(rl.Cur, 1<<20))
}

// idleStream renews a stream's read or write deadline as bytes move, so
// that a peer that stops sending or reading for idle is cut off while a
// slow but steady transfer of any size goes on. limit, when set, is a
// deadline no renewal passes (the caller's context deadline).
type idleStream struct {
	s     network.Stream
	idle  time.Duration
	limit time.Time
	peer  string // for errors; empty on the serving side

	readSet, writeSet time.Time // when each deadline was last renewed
}

// renew pushes a deadline to idle from now, at most every idle/8, so a
// stream of small reads does not reset a timer for each.
func (d *idleStream) renew(last *time.Time, set func(time.Time) error) {
	now := time.Now()
	if now.Sub(*last) < d.idle/8 {
		return
	}
	*last = now
	dl := now.Add(d.idle)
	if !d.limit.IsZero() && d.limit.Before(dl) {
		dl = d.limit
	}
	_ = set(dl)
}

func (d *idleStream) Read(p []byte) (int, error) {
	d.renew(&d.readSet, d.s.SetReadDeadline)
	n, err := d.s.Read(p)
	return n, d.stalled(err)
}

func (d *idleStream) Write(p []byte) (int, error) {
	d.renew(&d.writeSet, d.s.SetWriteDeadline)
	n, err := d.s.Write(p)
	return n, d.stalled(err)
}

// stalled marks a deadline that passed because the peer went idle.
func (d *idleStream) stalled(err error) error {
	var ne net.Error
	if err == nil || !(errors.As(err, &ne) && ne.Timeout()) {
		return err
	}
	if !d.limit.IsZero() && !time.Now().Before(d.limit) {
		return fmt.Errorf("nar stream with %s: %w", d.peer, context.DeadlineExceeded)
	}
	return fmt.Errorf("%w: %s moved no byte for %s", ErrStalled, d.peer, d.idle)
}
