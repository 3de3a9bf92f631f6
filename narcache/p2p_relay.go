package narcache

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	pbv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/pb"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"
)

// relayResources are the limits of this node's circuit relay service.
//
// libp2p's defaults cap every relayed connection at 128 KiB and 2 minutes
// per direction: made for hole-punching handshakes, they would cut every
// nar transfer short. A relayed connection here carries whole nars (often
// hundreds of megabytes), so it has no data or time limit. That is safe
// because the relay serves only members: the member gater refuses any
// other peer before it can open a stream, and memberACL refuses to reserve
// for, or connect to, a non-member. What stays bounded is the count:
// reservations and circuits per peer, so one member cannot pin the
// relay's memory. Members behind one NAT share an address, so the per-IP
// and per-ASN caps equal the overall cap. The copy buffer keeps its
// 2 KiB default: 64 KiB relayed no faster (BenchmarkP2P_Relayed).
func relayResources() relayv2.Resources {
	rc := relayv2.DefaultResources()
	rc.Limit = nil
	rc.MaxReservations = 256
	rc.MaxReservationsPerIP = rc.MaxReservations
	rc.MaxReservationsPerASN = rc.MaxReservations
	rc.MaxCircuits = 16
	return rc
}

// memberACL lets only members reserve a slot on this relay, and relays
// only between members.
type memberACL struct {
	allow func(peer.ID) bool
}

func (a memberACL) AllowReserve(p peer.ID, _ ma.Multiaddr) bool { return a.allow(p) }
func (a memberACL) AllowConnect(src peer.ID, _ ma.Multiaddr, dest peer.ID) bool {
	return a.allow(src) && a.allow(dest)
}

// RelayStats counts what this node's relay service has carried since
// Start.
type RelayStats struct {
	// Reservations is how many reservations (new or renewed) were granted.
	Reservations int64
	// Circuits is how many relayed connections were opened.
	Circuits int64
	// Bytes is how many bytes were relayed, both directions together.
	Bytes int64
}

// relayCounter is the relay service's metrics tracer: plain counters.
type relayCounter struct {
	reservations, circuits, bytes atomic.Int64
}

var _ relayv2.MetricsTracer = (*relayCounter)(nil)

func (c *relayCounter) RelayStatus(bool)                      {}
func (c *relayCounter) ConnectionOpened()                     { c.circuits.Add(1) }
func (c *relayCounter) ConnectionClosed(time.Duration)        {}
func (c *relayCounter) ConnectionRequestHandled(pbv2.Status)  {}
func (c *relayCounter) ReservationAllowed(bool)               { c.reservations.Add(1) }
func (c *relayCounter) ReservationClosed(int)                 {}
func (c *relayCounter) ReservationRequestHandled(pbv2.Status) {}
func (c *relayCounter) BytesTransferred(n int)                { c.bytes.Add(int64(n)) }
func (c *relayCounter) stats() RelayStats {
	if c == nil {
		return RelayStats{}
	}
	return RelayStats{Reservations: c.reservations.Load(), Circuits: c.circuits.Load(), Bytes: c.bytes.Load()}
}

// startRelayService runs the circuit relay v2 service on h. It starts it
// directly rather than through libp2p.EnableRelayService, which waits
// until AutoNAT finds the host publicly reachable: members do not run
// AutoNAT servers for each other, and the operator who asks for a relay
// already knows the node is public.
func startRelayService(h host.Host, allow func(peer.ID) bool, c *relayCounter) (*relayv2.Relay, error) {
	return relayv2.New(h,
		relayv2.WithResources(relayResources()),
		relayv2.WithACL(memberACL{allow: allow}),
		relayv2.WithMetricsTracer(c),
	)
}

const (
	relayRetryMin = time.Second
	relayRetryMax = 30 * time.Second
	// relayReserveTimeout bounds one dial plus reservation.
	relayReserveTimeout = 30 * time.Second
)

// relayKeeper holds a reservation on each static relay, so that members
// can reach this node at RELAYADDR/p2p/RELAY/p2p-circuit/p2p/SELF. It
// renews a reservation at three quarters of its lifetime and makes a new
// one as soon as the connection to the relay drops (the relay forgets a
// reservation with its connection).
//
// libp2p's AutoRelay does the same but announces a relay address only when
// the relay's own address is public; a relay on a LAN, or in a test on
// loopback, never yields an address. The keeper announces the addresses
// the operator configured for each relay, which this node just used to
// reach it.
type relayKeeper struct {
	h      host.Host
	relays []peer.AddrInfo
	log    *slog.Logger

	mu       sync.Mutex
	expires  map[peer.ID]time.Time
	reserved chan struct{} // closed at the first reservation
	once     sync.Once

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newRelayKeeper(h host.Host, relays []peer.AddrInfo, log *slog.Logger) *relayKeeper {
	return &relayKeeper{h: h, relays: relays, log: log,
		expires: map[peer.ID]time.Time{}, reserved: make(chan struct{})}
}

// start keeps one goroutine per relay until stop.
func (k *relayKeeper) start() error {
	ctx, cancel := context.WithCancel(context.Background())
	k.cancel = cancel
	for _, ai := range k.relays {
		sub, err := k.h.EventBus().Subscribe(new(event.EvtPeerConnectednessChanged))
		if err != nil {
			cancel()
			k.wg.Wait()
			return err
		}
		k.h.ConnManager().Protect(ai.ID, "drvmesh-relay")
		k.wg.Add(1)
		go func() {
			defer k.wg.Done()
			defer sub.Close()
			k.keep(ctx, ai, sub)
		}()
	}
	return nil
}

func (k *relayKeeper) stop() {
	if k.cancel != nil {
		k.cancel()
	}
	k.wg.Wait()
}

// keep reserves on one relay until ctx ends.
func (k *relayKeeper) keep(ctx context.Context, ai peer.AddrInfo, sub event.Subscription) {
	backoff := relayRetryMin
	for {
		rctx, cancel := context.WithTimeout(ctx, relayReserveTimeout)
		rsvp, err := client.Reserve(rctx, k.h, ai)
		cancel()
		var wait time.Duration
		if err != nil {
			k.set(ai.ID, time.Time{})
			if ctx.Err() != nil {
				return
			}
			k.log.Warn("relay reservation failed", "relay", ai.ID.String(), "retry", backoff.String(), "err", err)
			wait = backoff
			backoff = min(2*backoff, relayRetryMax)
		} else {
			k.set(ai.ID, rsvp.Expiration)
			k.log.Info("relay reservation held", "relay", ai.ID.String(), "expires", rsvp.Expiration.Format(time.RFC3339))
			backoff = relayRetryMin
			wait = max(time.Until(rsvp.Expiration)*3/4, relayRetryMin)
		}
		if !k.waitFor(ctx, ai.ID, wait, sub) {
			return
		}
	}
}

// waitFor waits d, or until the connection to the relay drops; false when
// ctx ends.
func (k *relayKeeper) waitFor(ctx context.Context, relay peer.ID, d time.Duration, sub event.Subscription) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case e, ok := <-sub.Out():
			if !ok {
				return false
			}
			ev, _ := e.(event.EvtPeerConnectednessChanged)
			if ev.Peer == relay && ev.Connectedness == network.NotConnected {
				k.set(relay, time.Time{})
				return true
			}
		}
	}
}

func (k *relayKeeper) set(relay peer.ID, expires time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if expires.IsZero() {
		delete(k.expires, relay)
		return
	}
	k.expires[relay] = expires
	k.once.Do(func() { close(k.reserved) })
}

// addrs are this node's circuit addresses through every relay that holds
// a live reservation.
func (k *relayKeeper) addrs() []ma.Multiaddr {
	if k == nil {
		return nil
	}
	now := time.Now()
	var out []ma.Multiaddr
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, ai := range k.relays {
		if exp, ok := k.expires[ai.ID]; !ok || !exp.After(now) {
			continue
		}
		circuit, err := ma.NewMultiaddr("/p2p/" + ai.ID.String() + "/p2p-circuit")
		if err != nil {
			continue
		}
		for _, a := range ai.Addrs {
			out = append(out, a.Encapsulate(circuit))
		}
	}
	return out
}

// isCircuit says whether a multiaddr goes through a relay.
func isCircuit(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}

// RelayStats reports what this node's relay service carried; zero when it
// runs none.
func (p *P2P) RelayStats() RelayStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.relayCount.stats()
}

// Reserved is closed once this node holds a reservation on one of its
// static relays; it is nil without relays or before Start.
func (p *P2P) Reserved() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.keeper == nil {
		return nil
	}
	return p.keeper.reserved
}

// WaitReserved waits until this node holds a relay reservation, so that
// the addresses it announces include a relay address. It returns at once
// without static relays.
func (p *P2P) WaitReserved(ctx context.Context) error {
	ch := p.Reserved()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for a relay reservation: %w", ctx.Err())
	}
}
