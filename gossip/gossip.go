package gossip

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Gossip is one node's membership in the mesh: it runs a memberlist, keeps
// this node's Meta on it, and tracks every member it has heard of,
// including dead and left ones, for Retention.
type Gossip struct {
	cfg    Config
	logger *slog.Logger

	// life guards ml and the started/closed flags. Calls into memberlist
	// hold it for reading; Start and Close hold it for writing. It is never
	// taken by a delegate.
	life    sync.RWMutex
	ml      *memberlist.Memberlist
	started bool
	closed  bool

	// mu guards the fields below. Delegates take it while memberlist holds
	// its own locks, so code holding mu never calls into memberlist.
	mu      sync.Mutex
	meta    Meta
	rawMeta []byte
	leaving bool // Leave has begun; rawMeta carries the leave mark
	members map[string]*Member
	// leftHint names members a push/pull reported as left, for when
	// memberlist's NotifyLeave follows.
	leftHint map[string]bool
	events   chan Event
	evDone   bool // events is closed

	dropped atomic.Uint64
}

// New checks cfg and returns a Gossip that has not started: no socket is
// open and no goroutine runs until Start.
func New(cfg Config) (*Gossip, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	raw, err := EncodeMeta(Meta{})
	if err != nil {
		return nil, err
	}
	return &Gossip{
		cfg:      cfg,
		logger:   cfg.Logger.With("component", "gossip"),
		rawMeta:  raw,
		members:  make(map[string]*Member),
		leftHint: make(map[string]bool),
		events:   make(chan Event, cfg.EventBuffer),
	}, nil
}

// Start creates the memberlist: it binds the listeners and starts probing
// and gossiping, alone until Join. ctx bounds only the start itself.
func (g *Gossip) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("start gossip: %w", err)
	}
	g.life.Lock()
	defer g.life.Unlock()
	switch {
	case g.closed:
		return ErrClosed
	case g.started:
		return ErrStarted
	}
	ml, err := memberlist.Create(g.cfg.memberlistConfig(g))
	if err != nil {
		return fmt.Errorf("start gossip: %w", err)
	}
	g.ml, g.started = ml, true
	g.logger.Info("gossip started", logKeyNode, g.cfg.Name, logKeyAddr, g.LocalAddr(),
		"encrypted", len(g.cfg.SecretKey) > 0)
	return nil
}

// running returns the memberlist while Start has run and Close has not;
// the caller holds g.life for reading.
func (g *Gossip) running() (*memberlist.Memberlist, error) {
	switch {
	case g.closed:
		return nil, ErrClosed
	case !g.started:
		return nil, ErrNotStarted
	}
	return g.ml, nil
}

// Join contacts the given gossip addresses (host:port; a missing port means
// DefaultPort) and syncs state with each. It returns how many answered; the
// error is non-nil only when none did.
func (g *Gossip) Join(addrs []string) (int, error) {
	g.life.RLock()
	defer g.life.RUnlock()
	ml, err := g.running()
	if err != nil {
		return 0, err
	}
	n, err := ml.Join(addrs)
	if err != nil {
		return n, fmt.Errorf("join %v: %w", addrs, err)
	}
	return n, nil
}

// SetMeta replaces this node's meta and, once started, broadcasts it,
// waiting up to UpdateTimeout for the broadcast to go out. The new meta is
// applied locally and keeps spreading even when that wait times out.
func (g *Gossip) SetMeta(m Meta) error {
	raw, err := EncodeMeta(m)
	if err != nil {
		return fmt.Errorf("set meta: %w", err)
	}
	m = cloneMeta(m)
	g.life.RLock()
	defer g.life.RUnlock()
	if g.closed {
		return ErrClosed
	}
	g.mu.Lock()
	if g.leaving {
		raw, err = encodeMeta(m, true)
	}
	if err == nil {
		g.meta, g.rawMeta = m, raw
	}
	g.mu.Unlock()
	if err != nil {
		return fmt.Errorf("set meta: %w", err)
	}
	if !g.started {
		return nil
	}
	if err := g.ml.UpdateNode(g.cfg.UpdateTimeout); err != nil {
		return fmt.Errorf("set meta: %w", err)
	}
	return nil
}

// Meta returns this node's current meta.
func (g *Gossip) Meta() Meta {
	g.mu.Lock()
	defer g.mu.Unlock()
	return cloneMeta(g.meta)
}

// localMeta is the encoded meta memberlist advertises.
func (g *Gossip) localMeta() []byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.rawMeta
}

// Members returns every member this node knows, itself included, sorted by
// name: alive ones, and dead or left ones until Retention after their last
// change.
func (g *Gossip) Members() []Member {
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]Member, 0, len(g.members))
	for name, m := range g.members {
		if m.Status != StatusAlive && now.Sub(m.Changed) > g.cfg.Retention {
			delete(g.members, name)
			continue
		}
		c := *m
		c.Meta = cloneMeta(m.Meta)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Member returns the member called name, if this node knows it.
func (g *Gossip) Member(name string) (Member, bool) {
	for _, m := range g.Members() {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// NumMembers returns how many members memberlist counts as alive, this
// node included; 0 before Start and after Close.
func (g *Gossip) NumMembers() int {
	g.life.RLock()
	defer g.life.RUnlock()
	ml, err := g.running()
	if err != nil {
		return 0
	}
	return ml.NumMembers()
}

// Health returns memberlist's awareness score: 0 is healthy, higher means
// this node is missing acks and probes more slowly. -1 before Start and
// after Close.
func (g *Gossip) Health() int {
	g.life.RLock()
	defer g.life.RUnlock()
	ml, err := g.running()
	if err != nil {
		return -1
	}
	return ml.GetHealthScore()
}

// Events returns the membership changes, in order. The channel holds
// EventBuffer events; when the reader falls behind, the oldest event is
// dropped (DroppedEvents counts them) so memberlist never waits. Members is
// always current, so a reader that may have missed events re-reads it. The
// channel is closed by Close.
func (g *Gossip) Events() <-chan Event { return g.events }

// DroppedEvents returns how many events were dropped from a full Events
// channel.
func (g *Gossip) DroppedEvents() uint64 { return g.dropped.Load() }

// LocalName returns this node's name.
func (g *Gossip) LocalName() string { return g.cfg.Name }

// LocalAddr returns the gossip address (host:port) other nodes join
// through, or "" before Start.
func (g *Gossip) LocalAddr() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if m, ok := g.members[g.cfg.Name]; ok {
		return m.Addr
	}
	return ""
}

// Leave tells the mesh this node leaves; others then list it as left, not
// dead. It takes three steps, each waited for up to timeout: a meta update
// carrying a leave mark, a direct notice to every live member (leave.go),
// then memberlist's leave. (memberlist's notification does not say whether
// a node left or died, so peers read the notice or the mark; a peer that
// got neither learns "left" at a push/pull soon after, or lists the node
// as dead.) The node keeps its listeners until Close, which
// should follow.
func (g *Gossip) Leave(timeout time.Duration) error {
	g.life.RLock()
	defer g.life.RUnlock()
	ml, err := g.running()
	if err != nil {
		return err
	}
	g.mu.Lock()
	raw, err := encodeMeta(g.meta, true)
	if err == nil {
		g.leaving, g.rawMeta = true, raw
	}
	g.mu.Unlock()
	if err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	if err := ml.UpdateNode(timeout); err != nil {
		g.logger.Warn("leave mark not confirmed", logKeyErr, err)
	}
	g.tellLeaving(ml, timeout)
	if err := ml.Leave(timeout); err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	g.logger.Info("left mesh", logKeyNode, g.cfg.Name)
	return nil
}

// Close stops memberlist without leaving (others see this node die unless
// Leave ran first) and closes the Events channel. It is safe to call more
// than once, and before Start.
func (g *Gossip) Close() error {
	g.life.Lock()
	defer g.life.Unlock()
	if g.closed {
		return nil
	}
	g.closed = true
	var err error
	if g.started {
		err = g.ml.Shutdown()
	}
	g.mu.Lock()
	g.evDone = true
	close(g.events)
	g.mu.Unlock()
	if err != nil {
		return fmt.Errorf("close gossip: %w", err)
	}
	return nil
}

func cloneMeta(m Meta) Meta {
	m.Systems = cloneStrings(m.Systems)
	m.Features = cloneStrings(m.Features)
	return m
}

func cloneStrings(s []string) []string {
	if s == nil {
		return nil
	}
	return append([]string(nil), s...)
}
