package leader

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/gossip"
)

// Raft is the part of consensus.Raft the leader drives.
type Raft interface {
	IsLeader() bool
	WatchLeadership() (<-chan bool, func())
	Subscribe() (<-chan struct{}, func())
	State() *consensus.FSM
	Servers() ([]consensus.Server, error)
	AddVoter(id, addr string) error
	AddNonvoter(id, addr string) error
	RemoveServer(id string) error
	Stats() (term, commitIndex, appliedIndex uint64)
	Nudge()
}

// Applier writes through the leader and returns once this node's state
// includes the command.
type Applier interface {
	ApplyAndCatchUp(ctx context.Context, cmd consensus.Command) ([]string, error)
}

// Members is the gossip view: who is alive, with what meta, and the
// events that say it changed.
type Members interface {
	Member(name string) (gossip.Member, bool)
	Members() []gossip.Member
	Events() <-chan gossip.Event
}

// IndexReader asks another node, by its cluster address, how far it has
// applied the log.
type IndexReader interface {
	RemoteApplied(ctx context.Context, clusterAddr string) (uint64, error)
}

// Copies restores the copy count of nars.
type Copies interface {
	// ReplicateAsync copies the nars again, in the background.
	ReplicateAsync(hashParts ...string)
	// RepairCopies copies again up to max nars with fewer alive holders
	// than the mesh keeps (and found so the time before), and returns
	// how many it asked for.
	RepairCopies(ctx context.Context, max int) (int, error)
}

// Submitter reads the derivations the mesh holds and records builds.
type Submitter interface {
	// DrvReader returns a reader of derivation records, each .drv read
	// and checked once per reader.
	DrvReader(ctx context.Context) func(drv string) (*consensus.Drv, error)
	// Submit records builds for derivations and returns how many it made.
	Submit(ctx context.Context, drvs []string) (int, error)
}

// Config is what the leader's duties need.
type Config struct {
	Name      string        // this node
	MaxVoters int           // raft voters the leader keeps
	DeadAfter time.Duration // how long a voter may be dead before removal
	HooksDir  string        // executables named after events ("" = none)
	Fast      bool          // test timings
	Scale     float64       // multiplies the hook handover
	URL       func() string // this node's HTTP base URL, for hooks
	// BuildJSON is a build as a hook reads it on stdin: the API's JSON
	// of the build, not the replicated record. Required with HooksDir.
	BuildJSON func(*consensus.Build) ([]byte, error)

	Raft    Raft
	Apply   Applier
	Members Members
	Index   IndexReader
	Copies  Copies
	Submit  Submitter

	Assigned prometheus.Counter     // builds assigned
	HookRuns *prometheus.CounterVec // hook runs by event and result
	Log      *slog.Logger
}

// Leader runs the leader-only duties while this node leads (see Run).
type Leader struct {
	cfg     Config
	log     *slog.Logger
	raft    Raft
	apply   Applier
	members Members
	index   IndexReader
	copies  Copies
	hooks   *hookRunner
	// sched is the scheduler state of the current term while leading.
	sched atomic.Pointer[Planner]
}

// New makes the leader's duties; Run runs them.
func New(cfg Config) *Leader {
	return &Leader{
		cfg: cfg, log: cfg.Log, raft: cfg.Raft, apply: cfg.Apply, members: cfg.Members,
		index: cfg.Index, copies: cfg.Copies,
		hooks: &hookRunner{cfg: cfg, raft: cfg.Raft, apply: cfg.Apply, log: cfg.Log, ran: map[uint64]bool{}},
	}
}
