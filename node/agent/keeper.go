package agent

import (
	"context"
	"log/slog"
	"net/http"
	"sync"

	"github.com/drvmesh/drvmesh/narcache"
)

// Keeper keeps this node's nars and their copies: it signs the records
// of the nars this node makes, asks other nodes to copy them until each
// has MinCopies alive holders, copies what others ask it to, and evicts
// over quota only what others hold.
type Keeper struct {
	cfg     Config
	log     *slog.Logger
	raft    Raft
	apply   Applier
	members Members
	files   Files
	disk    *narcache.Disk
	p2p     Fetcher

	run context.Context // the node's run context: copies end with it
	wg  sync.WaitGroup  // the copies under way

	short map[string]bool // nars RepairCopies found short last time
}

// NewKeeper makes the keeper; the copies it makes in the background end
// when run does. It starts nothing.
func NewKeeper(run context.Context, cfg Config) *Keeper {
	return &Keeper{
		cfg: cfg, log: cfg.Log, raft: cfg.Raft, apply: cfg.Apply, members: cfg.Members, files: cfg.Files,
		disk: cfg.Disk, p2p: cfg.P2P, run: run,
	}
}

// Wait waits for the copies under way.
func (k *Keeper) Wait() { k.wg.Wait() }

// Routes adds the keeper's node-to-node calls to the cluster port's mux.
func (k *Keeper) Routes(mux *http.ServeMux) {
	mux.HandleFunc("POST /rpc/replicate", k.handleReplicate)
}
