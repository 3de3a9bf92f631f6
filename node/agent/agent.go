package agent

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/drvmesh/drvmesh/builder"
	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/gossip"
	"github.com/drvmesh/drvmesh/narcache"
	"github.com/drvmesh/drvmesh/node/internal/httpjson"
	"github.com/drvmesh/drvmesh/node/internal/logkey"
	"github.com/drvmesh/drvmesh/store"
)

// Raft is the part of consensus.Raft the agent reads.
type Raft interface {
	State() *consensus.FSM
	Subscribe() (<-chan struct{}, func())
}

// Applier writes through the leader: ApplyAndCatchUp returns once this
// node's state includes the command, ApplyAtLeader once the leader applied
// it; CatchUp waits for this node's state to reach a raft index.
type Applier interface {
	ApplyAndCatchUp(ctx context.Context, cmd consensus.Command) ([]string, error)
	ApplyAtLeader(ctx context.Context, cmd consensus.Command) ([]string, error)
	CatchUp(ctx context.Context, index uint64) error
}

// Members is the gossip view: who is alive, with how much free disk.
type Members interface {
	Member(name string) (gossip.Member, bool)
	Members() []gossip.Member
}

// Files maps nar file keys to store path hash parts and their holders.
type Files interface {
	// Note remembers the file keys of a narinfo.
	Note(ni *consensus.NarInfo)
	// HashPart is the hash part of the store path a file key belongs to.
	HashPart(key string) (string, bool)
	// Holders are the other nodes that hold the file, best first.
	Holders(key string) []narcache.Holder
}

// Fetcher copies a nar file from a holder over libp2p, verified.
type Fetcher interface {
	Replicate(ctx context.Context, h narcache.Holder, want narcache.File) (narcache.File, error)
}

// Config is what the agent needs.
type Config struct {
	Name       string // this node
	Builder    string // "nix", "guix" or "none": none builds nothing
	StoreDir   string // the mesh's store directory
	DataDir    string // build logs go to DataDir/logs
	MaxJobs    int    // builds run at once
	MinCopies  int    // copies of each nar, unless the settings say
	QuotaBytes int64  // the nar store's limit (0 = none)
	URL        func() string
	Signer     store.SecretKey
	RPC        *http.Client // client of the cluster port
	// PushMeta asks for this node's gossip meta to be sent soon.
	PushMeta func()
	// CopyWait bounds a copy request to another node, plus the nar's
	// transfer time (0: 20 s).
	CopyWait time.Duration

	Raft    Raft
	Apply   Applier
	Members Members
	Files   Files
	Build   builder.Builder
	Disk    *narcache.Disk
	P2P     Fetcher

	BuildSeconds prometheus.Observer      // time in the builder per build
	BuildPhase   *prometheus.HistogramVec // time per build phase
	Log          *slog.Logger
}

// Agent is this node's building side.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	raft    Raft
	apply   Applier
	members Members
	files   Files
	builder builder.Builder
	disk    *narcache.Disk
	p2p     Fetcher

	keep *Keeper // records outputs and makes their copies

	jobsMu sync.Mutex
	jobs   map[string]*job // running builds by id
	// reported holds builds whose result this node reported, by id, with
	// the attempt it ran, until the state here shows that attempt (see
	// pickUp).
	reported map[string]int

	wg sync.WaitGroup // every goroutine the agent starts
}

// New makes the agent, which records and copies its outputs with keep;
// it starts nothing.
func New(cfg Config, keep *Keeper) *Agent {
	return &Agent{
		cfg: cfg, log: cfg.Log, raft: cfg.Raft, apply: cfg.Apply, members: cfg.Members, files: cfg.Files,
		builder: cfg.Build, disk: cfg.Disk, p2p: cfg.P2P, keep: keep,
		jobs: map[string]*job{}, reported: map[string]int{},
	}
}

// Start runs the agent's loop until ctx ends.
func (a *Agent) Start(ctx context.Context) {
	a.wg.Add(1)
	go func() { defer a.wg.Done(); a.loop(ctx) }()
}

// Wait waits for every goroutine the agent started.
func (a *Agent) Wait() { a.wg.Wait() }

// Running is the number of builds running here.
func (a *Agent) Running() int {
	a.jobsMu.Lock()
	defer a.jobsMu.Unlock()
	return len(a.jobs)
}

// IsRunning reports whether the build runs here.
func (a *Agent) IsRunning(id string) bool {
	a.jobsMu.Lock()
	defer a.jobsMu.Unlock()
	_, ok := a.jobs[id]
	return ok
}

// StopJobs cancels every running build; with handBack the builds are
// handed back (the node is leaving), not failed. It returns how many ran.
func (a *Agent) StopJobs(handBack bool) int {
	a.jobsMu.Lock()
	defer a.jobsMu.Unlock()
	for _, j := range a.jobs {
		if handBack {
			j.handBack = true
		}
		j.cancel()
	}
	return len(a.jobs)
}

// LogPath is where the log of a build run here is kept.
func (a *Agent) LogPath(buildID string) string {
	return filepath.Join(a.cfg.DataDir, dirLogs, buildID+".log")
}

// phase records the time since start as one build phase.
func (a *Agent) phase(name string, start time.Time) {
	a.cfg.BuildPhase.WithLabelValues(name).Observe(time.Since(start).Seconds())
}

// statusOf maps an error of a replicate request to an HTTP status.
func statusOf(err error) int {
	var nl *consensus.NotLeaderError
	switch {
	case errors.Is(err, consensus.ErrNotFound):
		return http.StatusNotFound
	case errors.As(err, &nl), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

const dirLogs = "logs"

// Log keys, from the node's one list.
const (
	keyErr     = logkey.Err
	keyBuild   = logkey.Build
	keyDrv     = logkey.Drv
	keyPath    = logkey.Path
	keyCount   = logkey.Count
	keyElapsed = logkey.Elapsed
)

var (
	writeJSON = httpjson.Write
	apiError  = httpjson.Error
)
