package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	wire "github.com/drvmesh/drvmesh/api"
	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/gossip"
	"github.com/drvmesh/drvmesh/narcache"
	"github.com/drvmesh/drvmesh/node/internal/httpjson"
	"github.com/drvmesh/drvmesh/store"
)

// Errors of API requests.
var (
	// ErrBadRequest: an API request is malformed.
	ErrBadRequest = errors.New("bad request")
	// ErrTooLarge: a request sends or asks for more than the API takes
	// at once (413).
	ErrTooLarge = errors.New("too large")
)

// Raft is the part of consensus.Raft the API reads.
type Raft interface {
	State() *consensus.FSM
	Stats() (term, commitIndex, appliedIndex uint64)
	Leader() (id, addr string)
	Servers() ([]consensus.Server, error)
}

// Applier writes through the leader (returning once this node's state
// includes the write) and makes reads linearizable.
type Applier interface {
	ApplyAndCatchUp(ctx context.Context, cmd consensus.Command) ([]string, error)
	CatchUpWithLeader(ctx context.Context) error
}

// Members is the gossip view of the mesh.
type Members interface {
	Members() []gossip.Member
}

// Copies are this node's nars and their copies.
type Copies interface {
	// LocalFile is the first form of a nar this node holds on disk.
	LocalFile(ni *consensus.NarInfo) (narcache.File, bool)
	// ReplicateLocal fetches a nar from a holder and records the copy.
	ReplicateLocal(ctx context.Context, hashPart string) error
	// ReplicateAsync makes other nodes copy new nars, in the background.
	ReplicateAsync(hashParts ...string)
	// EnsureCopies makes other nodes copy new nars and returns once they
	// have MinCopies alive holders.
	EnsureCopies(ctx context.Context, hashParts ...string) error
	// Record builds the signed index record of a nar this node holds.
	Record(path string, nar narcache.Nar, refs []string, deriver, system, ca string) consensus.NarInfo
}

// Jobs are the builds running on this node.
type Jobs interface {
	// IsRunning reports whether a build runs here; LogPath is its log.
	IsRunning(id string) bool
	LogPath(buildID string) string
	// RemoteLog opens the log of a build on the node that ran it, over
	// the cluster port.
	RemoteLog(ctx context.Context, node, id string, follow bool) (io.ReadCloser, error)
}

// Files maps nar file keys to store path hash parts.
type Files interface {
	Note(ni *consensus.NarInfo)
	HashPart(key string) (string, bool)
}

// Config is what the API serves from.
type Config struct {
	Name      string               // this node
	StoreDir  string               // the mesh's store directory
	PublicKey string               // the mesh's Nix public key line
	Guix      *store.GuixSecretKey // nil unless the mesh signs for Guix

	Raft    Raft
	Apply   Applier
	Members Members
	Copies  Copies
	Jobs    Jobs
	Files   Files
	Disk    *narcache.Disk

	// NoLeader is the error Apply wraps while no leader is known; the API
	// answers 503 for it.
	NoLeader error
	// TokenHash is how tokens are kept in the replicated state.
	TokenHash func(token string) string
	// PublicRead is what anyone may read without the admin token;
	// "" is PublicReadCache.
	PublicRead PublicRead
	// MaxUpload bounds one uploaded or imported NAR other than a .drv's;
	// 0 is DefaultMaxUpload.
	MaxUpload int64

	Join    http.Handler // POST /api/v1/join
	Cache   http.Handler // the binary cache, for every other path
	Metrics http.Handler // GET /metrics
}

// API is the node's public HTTP surface.
type API struct {
	cfg     Config
	raft    Raft
	apply   Applier
	members Members
	copies  Copies
	jobs    Jobs
	files   Files
	disk    *narcache.Disk
}

// New makes the API; Handler serves it.
func New(cfg Config) *API {
	if cfg.PublicRead == "" {
		cfg.PublicRead = PublicReadCache
	}
	if cfg.MaxUpload <= 0 {
		cfg.MaxUpload = DefaultMaxUpload
	}
	if cfg.NoLeader == nil {
		cfg.NoLeader = errors.New("no leader")
	}
	return &API{cfg: cfg, raft: cfg.Raft, apply: cfg.Apply, members: cfg.Members, copies: cfg.Copies, jobs: cfg.Jobs, files: cfg.Files, disk: cfg.Disk}
}

var writeJSON = httpjson.Write

// apiError answers status with an error body.
func apiError(w http.ResponseWriter, status int, format string, a ...any) {
	writeJSON(w, status, wire.ErrorResponse{Message: fmt.Sprintf(format, a...)})
}
