package consensus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// LAN timing defaults (before Config.Scale). Failover takes about 1.5–3 ×
// the heartbeat timeout, so these aim at a failover under a second.
const (
	DefaultHeartbeatTimeout   = 300 * time.Millisecond
	DefaultElectionTimeout    = 300 * time.Millisecond
	DefaultLeaderLeaseTimeout = 150 * time.Millisecond
	DefaultCommitTimeout      = 50 * time.Millisecond
	DefaultSnapshotThreshold  = 8192
	DefaultSnapshotInterval   = 2 * time.Minute
	DefaultTrailingLogs       = 10240
	defaultApplyTimeout       = 10 * time.Second
)

// Timings are raft's four timeouts, before Config.Scale.
type Timings struct {
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
}

// DefaultTimings are the LAN defaults that New fills in for zero fields.
func DefaultTimings() Timings {
	return Timings{
		HeartbeatTimeout:   DefaultHeartbeatTimeout,
		ElectionTimeout:    DefaultElectionTimeout,
		LeaderLeaseTimeout: DefaultLeaderLeaseTimeout,
		CommitTimeout:      DefaultCommitTimeout,
	}
}

// TestTimings cut the timeouts to tens of milliseconds, with room for
// -race on two busy cores, so a mesh on 127.0.0.1 elects and fails over
// within a test. They are too tight for real networks.
func TestTimings() Timings {
	return Timings{
		HeartbeatTimeout:   100 * time.Millisecond,
		ElectionTimeout:    100 * time.Millisecond,
		LeaderLeaseTimeout: 50 * time.Millisecond,
		CommitTimeout:      5 * time.Millisecond,
	}
}

// SetTimings sets the four timeouts of c.
func (c *Config) SetTimings(t Timings) {
	c.HeartbeatTimeout = t.HeartbeatTimeout
	c.ElectionTimeout = t.ElectionTimeout
	c.LeaderLeaseTimeout = t.LeaderLeaseTimeout
	c.CommitTimeout = t.CommitTimeout
}

// Config configures a Raft node.
type Config struct {
	NodeID  string // raft server id (the node name)
	DataDir string // raft.db (log + stable store), snapshots/, fsm/
	// Advertise is the raft address other nodes dial. When Layer is nil a
	// plain TCP listener is opened on it ("127.0.0.1:0" picks a port; see
	// Raft.Addr).
	Advertise string
	// Layer carries raft traffic (the node supplies its own, over its
	// mutual-TLS cluster port); nil means plain TCP on Advertise.
	Layer raft.StreamLayer
	// Bootstrap makes this node the single voter of a new cluster when its
	// data dir holds no raft state; it is ignored otherwise.
	Bootstrap bool
	// Scale multiplies the four timings below (0 means 1).
	Scale float64

	HeartbeatTimeout   time.Duration // default DefaultHeartbeatTimeout
	ElectionTimeout    time.Duration // default DefaultElectionTimeout
	LeaderLeaseTimeout time.Duration // default DefaultLeaderLeaseTimeout
	CommitTimeout      time.Duration // default DefaultCommitTimeout

	SnapshotThreshold uint64        // log entries between snapshots; default DefaultSnapshotThreshold
	SnapshotInterval  time.Duration // how often to check; default DefaultSnapshotInterval
	TrailingLogs      uint64        // log entries kept after a snapshot; default DefaultTrailingLogs

	Logger *slog.Logger
}

// Server is one member of the raft configuration.
type Server struct {
	ID    string `json:"id"`
	Addr  string `json:"addr"`
	Voter bool   `json:"voter"`
}

// noPipeline is the network transport without pipelined replication.
// hashicorp/raft's pipeline can deadlock when a follower rejects an
// append (its two channels are unbuffered with the default of two RPCs
// in flight): the follower then stops receiving entries while it still
// gets heartbeats, and the leader's shutdown hangs. Without a pipeline,
// raft replicates with one AppendEntries at a time per follower, each
// carrying every entry that is waiting, which batching makes up for.
type noPipeline struct {
	*raft.NetworkTransport
}

// AppendEntriesPipeline tells raft to replicate without a pipeline.
func (noPipeline) AppendEntriesPipeline(raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) {
	return nil, raft.ErrPipelineReplicationNotSupported
}

// Raft is one replica: hashicorp/raft with raft-boltdb log and stable
// stores, a file snapshot store and the FSM, all under Config.DataDir.
type Raft struct {
	cfg    Config
	logger *slog.Logger

	mu        sync.Mutex
	raft      *raft.Raft
	fsm       *FSM
	store     *raftboltdb.BoltStore
	transport *raft.NetworkTransport
	notifyCh  chan bool
	done      chan struct{}
	wg        sync.WaitGroup

	subMu   sync.Mutex
	subs    map[int]chan bool
	nextSub int
}

// New checks cfg and fills its defaults; it opens and starts nothing.
func New(cfg Config) (*Raft, error) {
	if cfg.NodeID == "" || cfg.DataDir == "" {
		return nil, errors.New("consensus config: node id and data dir are required")
	}
	if cfg.Layer == nil && cfg.Advertise == "" {
		return nil, errors.New("consensus config: advertise address or stream layer required")
	}
	if cfg.Scale <= 0 {
		cfg.Scale = 1
	}
	scale := func(d *time.Duration, def time.Duration) {
		if *d == 0 {
			*d = def
		}
		*d = time.Duration(float64(*d) * cfg.Scale)
	}
	scale(&cfg.HeartbeatTimeout, DefaultHeartbeatTimeout)
	scale(&cfg.ElectionTimeout, DefaultElectionTimeout)
	scale(&cfg.LeaderLeaseTimeout, DefaultLeaderLeaseTimeout)
	scale(&cfg.CommitTimeout, DefaultCommitTimeout)
	if cfg.SnapshotThreshold == 0 {
		cfg.SnapshotThreshold = DefaultSnapshotThreshold
	}
	if cfg.SnapshotInterval == 0 {
		cfg.SnapshotInterval = DefaultSnapshotInterval
	}
	if cfg.TrailingLogs == 0 {
		cfg.TrailingLogs = DefaultTrailingLogs
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Raft{cfg: cfg, logger: cfg.Logger, subs: map[int]chan bool{}}, nil
}

func (r *Raft) raftConfig() *raft.Config {
	c := raft.DefaultConfig()
	c.LocalID = raft.ServerID(r.cfg.NodeID)
	c.HeartbeatTimeout = r.cfg.HeartbeatTimeout
	c.ElectionTimeout = r.cfg.ElectionTimeout
	c.LeaderLeaseTimeout = r.cfg.LeaderLeaseTimeout
	c.CommitTimeout = r.cfg.CommitTimeout
	c.SnapshotThreshold = r.cfg.SnapshotThreshold
	c.SnapshotInterval = r.cfg.SnapshotInterval
	c.TrailingLogs = r.cfg.TrailingLogs
	c.BatchApplyCh = true
	c.Logger = newHclog(r.logger, "raft")
	c.NotifyCh = r.notifyCh
	return c
}

// Start opens the stores, restores the latest snapshot and starts raft.
// The context is not retained; Close stops everything.
func (r *Raft) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.raft != nil {
		return errors.New("consensus already started")
	}
	if err := os.MkdirAll(r.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	hl := newHclog(r.logger, "raft")
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(r.cfg.DataDir, "raft.db")})
	if err != nil {
		return fmt.Errorf("open raft log: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(r.cfg.DataDir, 2, hl.Named("snapshot"))
	if err != nil {
		store.Close()
		return fmt.Errorf("open snapshot store: %w", err)
	}
	fsm, err := NewFSM(filepath.Join(r.cfg.DataDir, "fsm"), r.logger)
	if err != nil {
		store.Close()
		return err
	}
	layer := r.cfg.Layer
	if layer == nil {
		ln, err := net.Listen("tcp", r.cfg.Advertise)
		if err != nil {
			store.Close()
			fsm.Close()
			return fmt.Errorf("listen for raft: %w", err)
		}
		layer = &tcpStreamLayer{ln: ln, advertise: ln.Addr()}
	}
	transport := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: layer, MaxPool: 3, Timeout: 10 * time.Second, Logger: hl.Named("net"),
	})
	fail := func(err error) error {
		transport.Close()
		store.Close()
		fsm.Close()
		return err
	}
	hasState, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		return fail(fmt.Errorf("read raft state: %w", err))
	}
	r.notifyCh = make(chan bool, 1)
	ra, err := raft.NewRaft(r.raftConfig(), fsm, store, store, snaps, noPipeline{transport})
	if err != nil {
		return fail(fmt.Errorf("start raft: %w", err))
	}
	if r.cfg.Bootstrap && !hasState {
		err := ra.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
			Suffrage: raft.Voter, ID: raft.ServerID(r.cfg.NodeID), Address: transport.LocalAddr(),
		}}}).Error()
		if err != nil {
			ra.Shutdown().Error()
			return fail(fmt.Errorf("bootstrap raft: %w", err))
		}
	}
	r.raft, r.fsm, r.store, r.transport = ra, fsm, store, transport
	r.done = make(chan struct{})
	r.wg.Add(1)
	go r.forwardLeadership(r.notifyCh, r.done)
	r.logger.Info("raft started", "node", r.cfg.NodeID, "addr", transport.LocalAddr(), "bootstrap", r.cfg.Bootstrap && !hasState)
	return nil
}

// Close shuts raft down without a leadership transfer (call
// LeadershipTransfer first for a graceful stop) and closes the stores.
func (r *Raft) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.raft == nil {
		return nil
	}
	err := r.raft.Shutdown().Error()
	close(r.done)
	r.wg.Wait()
	if e := r.store.Close(); e != nil && err == nil {
		err = e
	}
	if e := r.fsm.Close(); e != nil && err == nil {
		err = e
	}
	r.raft = nil
	if err != nil {
		return fmt.Errorf("close raft: %w", err)
	}
	return nil
}

func (r *Raft) forwardLeadership(ch <-chan bool, done <-chan struct{}) {
	defer r.wg.Done()
	for {
		select {
		case <-done:
			return
		case v := <-ch:
			r.subMu.Lock()
			for _, s := range r.subs {
				select { // keep only the latest value
				case <-s:
				default:
				}
				s <- v
			}
			r.subMu.Unlock()
		}
	}
}

// WatchLeadership returns a channel that receives true when this node
// becomes leader and false when it stops being leader (only the latest
// value is kept), and a function that ends the watch.
func (r *Raft) WatchLeadership() (<-chan bool, func()) {
	ch := make(chan bool, 1)
	r.subMu.Lock()
	id := r.nextSub
	r.nextSub++
	r.subs[id] = ch
	r.subMu.Unlock()
	return ch, func() {
		r.subMu.Lock()
		delete(r.subs, id)
		r.subMu.Unlock()
	}
}

func (r *Raft) get() (*raft.Raft, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.raft == nil {
		return nil, ErrClosed
	}
	return r.raft, nil
}

func (r *Raft) notLeader(ra *raft.Raft) error {
	addr, id := ra.LeaderWithID()
	return &NotLeaderError{LeaderID: string(id), LeaderAddr: string(addr)}
}

// wrap turns raft's leadership errors into *NotLeaderError.
func (r *Raft) wrap(ra *raft.Raft, what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
		return fmt.Errorf("%s: %w", what, r.notLeader(ra))
	}
	return fmt.Errorf("%s: %w", what, err)
}

func timeout(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(time.Until(dl), time.Millisecond)
	}
	return defaultApplyTimeout
}

// Apply replicates cmd, stamped with this (leader's) clock, and returns the
// FSM's result: *SubmitResult, *AssignResult, *RequeueResult or nil. A
// command the FSM rejects returns its error (ErrBadTransition, ...). On a
// follower it returns a *NotLeaderError. raft.ErrLeadershipLost means the
// outcome is unknown: the entry may still commit.
func (r *Raft) Apply(ctx context.Context, cmd Command) (any, error) {
	r.mu.Lock()
	ra, done := r.raft, r.done
	r.mu.Unlock()
	if ra == nil {
		return nil, ErrClosed
	}
	if ra.State() != raft.Leader {
		return nil, r.notLeader(ra)
	}
	data, err := EncodeCommand(cmd, time.Now().UTC())
	if err != nil {
		return nil, err
	}
	f := ra.Apply(data, timeout(ctx))
	if err := await(f, done); err != nil {
		return nil, r.wrap(ra, "apply command", err)
	}
	if err, ok := f.Response().(error); ok {
		return nil, err
	}
	return f.Response(), nil
}

// await waits for a raft future, or until done closes. raft can leave a
// future unanswered when it shuts down between committing an entry and
// applying it; a caller waiting on it would then hang, and with it the
// shutdown that waits for that caller. The goroutine left waiting on such
// a future ends with the process.
func await(f raft.Future, done <-chan struct{}) error {
	res := make(chan error, 1)
	go func() { res <- f.Error() }()
	select {
	case err := <-res:
		return err
	case <-done:
		select {
		case err := <-res:
			return err
		default:
			return ErrClosed
		}
	}
}

// State is the local read view of the replicated state.
func (r *Raft) State() *FSM {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fsm
}

// Subscribe signals after each applied batch; see FSM.Subscribe.
func (r *Raft) Subscribe() (<-chan struct{}, func()) { return r.State().Subscribe() }

// Addr is the raft address this node advertises.
func (r *Raft) Addr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.transport == nil {
		return r.cfg.Advertise
	}
	return string(r.transport.LocalAddr())
}

// IsLeader reports whether this node is the leader.
func (r *Raft) IsLeader() bool {
	ra, err := r.get()
	return err == nil && ra.State() == raft.Leader
}

// Leader returns the id and raft address of the current leader (empty when
// unknown).
func (r *Raft) Leader() (id, addr string) {
	ra, err := r.get()
	if err != nil {
		return "", ""
	}
	a, i := ra.LeaderWithID()
	return string(i), string(a)
}

// RaftState is "leader", "follower", "candidate" or "shutdown".
func (r *Raft) RaftState() string {
	ra, err := r.get()
	if err != nil {
		return "shutdown"
	}
	return map[raft.RaftState]string{
		raft.Leader: "leader", raft.Follower: "follower", raft.Candidate: "candidate", raft.Shutdown: "shutdown",
	}[ra.State()]
}

// AddNonvoter adds (or keeps) a server that receives the log but does not
// vote. Leader only.
func (r *Raft) AddNonvoter(id, addr string) error {
	ra, err := r.get()
	if err != nil {
		return err
	}
	return r.wrap(ra, "add nonvoter "+id, ra.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), 0, defaultApplyTimeout).Error())
}

// AddVoter adds a voter or promotes a nonvoter. Add it as a nonvoter first
// and promote once it has caught up (compare its AppliedIndex, reported by
// the node itself, with this leader's commit index). Leader only.
func (r *Raft) AddVoter(id, addr string) error {
	ra, err := r.get()
	if err != nil {
		return err
	}
	return r.wrap(ra, "add voter "+id, ra.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, defaultApplyTimeout).Error())
}

// DemoteVoter turns a voter into a nonvoter. Leader only.
func (r *Raft) DemoteVoter(id string) error {
	ra, err := r.get()
	if err != nil {
		return err
	}
	return r.wrap(ra, "demote voter "+id, ra.DemoteVoter(raft.ServerID(id), 0, defaultApplyTimeout).Error())
}

// RemoveServer removes a server from the configuration. Leader only.
func (r *Raft) RemoveServer(id string) error {
	ra, err := r.get()
	if err != nil {
		return err
	}
	return r.wrap(ra, "remove server "+id, ra.RemoveServer(raft.ServerID(id), 0, defaultApplyTimeout).Error())
}

// Servers returns the latest raft configuration.
func (r *Raft) Servers() ([]Server, error) {
	ra, err := r.get()
	if err != nil {
		return nil, err
	}
	f := ra.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("raft configuration: %w", err)
	}
	var out []Server
	for _, s := range f.Configuration().Servers {
		out = append(out, Server{ID: string(s.ID), Addr: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return out, nil
}

// Stats returns the current term, commit index and applied index.
func (r *Raft) Stats() (term, commitIndex, appliedIndex uint64) {
	ra, err := r.get()
	if err != nil {
		return 0, 0, 0
	}
	return ra.CurrentTerm(), ra.CommitIndex(), ra.AppliedIndex()
}

// AppliedIndex is the last log index applied to the FSM here; a nonvoter
// has caught up when it reaches the leader's commit index.
func (r *Raft) AppliedIndex() uint64 {
	_, _, a := r.Stats()
	return a
}

// LastContact is when a follower last heard from the leader.
func (r *Raft) LastContact() time.Time {
	ra, err := r.get()
	if err != nil {
		return time.Time{}
	}
	return ra.LastContact()
}

// LeadershipTransfer hands leadership to another voter (a few ms); use it
// before a graceful Close of the leader.
func (r *Raft) LeadershipTransfer() error {
	ra, err := r.get()
	if err != nil {
		return err
	}
	return r.wrap(ra, "leadership transfer", ra.LeadershipTransfer().Error())
}

// Barrier waits until every entry committed before it is applied here.
// Leader only; with it, following reads of State are fresh.
func (r *Raft) Barrier(ctx context.Context) error {
	ra, err := r.get()
	if err != nil {
		return err
	}
	return r.wrap(ra, "barrier", ra.Barrier(timeout(ctx)).Error())
}

// Nudge makes the leader tell the followers its commit index now rather
// than with the next entry or at the commit timeout (up to twice
// CommitTimeout later): it appends a barrier entry, whose replication
// carries the index, and does not wait for it. The leader calls it after
// a commit that followers act on at once, such as assignments.
func (r *Raft) Nudge() {
	if ra, err := r.get(); err == nil {
		ra.Barrier(0)
	}
}

// VerifyLeader confirms with a quorum that this node is still the leader.
func (r *Raft) VerifyLeader() error {
	ra, err := r.get()
	if err != nil {
		return err
	}
	return r.wrap(ra, "verify leader", ra.VerifyLeader().Error())
}

// Snapshot forces a snapshot now (raft.ErrNothingNewToSnapshot when the
// last one is current).
func (r *Raft) Snapshot() error {
	ra, err := r.get()
	if err != nil {
		return err
	}
	return r.wrap(ra, "snapshot", ra.Snapshot().Error())
}

// tcpStreamLayer is the plain TCP layer used when Config.Layer is nil.
type tcpStreamLayer struct {
	ln        net.Listener
	advertise net.Addr
}

func (l *tcpStreamLayer) Accept() (net.Conn, error) { return l.ln.Accept() }
func (l *tcpStreamLayer) Close() error              { return l.ln.Close() }
func (l *tcpStreamLayer) Addr() net.Addr            { return l.advertise }

func (l *tcpStreamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(addr), timeout)
}
