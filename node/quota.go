package node

import (
	"context"
	"time"

	"github.com/drvmesh/drvmesh/consensus"
)

// defaultQuotaInterval is how often a node with a quota checks its nar
// store.
const defaultQuotaInterval = 30 * time.Second

// indexOwnFiles fills the file-key map from the nars the index says this
// node holds, so that files can be named by store path after a restart.
func (n *Node) indexOwnFiles() {
	st := n.raft.State()
	hps, err := st.NarsHeldBy(n.cfg.Name)
	if err != nil {
		return
	}
	for _, hp := range hps {
		if ni, err := st.NarInfoByHash(hp); err == nil && ni != nil {
			n.noteFiles(ni)
		}
	}
}

// enforceQuota evicts least recently used nars that other nodes hold too,
// and tells the index this node no longer holds them.
func (n *Node) enforceQuota(ctx context.Context) {
	if n.cfg.QuotaBytes <= 0 {
		return
	}
	before := map[string]bool{}
	for _, f := range n.disk.List() {
		before[f.Key()] = true
	}
	freed, err := n.disk.Evict()
	if err != nil {
		n.log.Warn("evict nars", keyErr, err)
	}
	if freed == 0 {
		return
	}
	for _, f := range n.disk.List() {
		delete(before, f.Key())
	}
	for key := range before {
		hp, ok := n.fileIndex(key)
		if !ok {
			continue
		}
		if _, err := n.apply(ctx, &consensus.SetNarHolder{Hash: hp, Node: n.cfg.Name, Present: false}); err != nil {
			n.log.Warn("record eviction", keyPath, hp, keyErr, err)
		}
	}
	n.log.Info("evicted nars over quota", "bytes", freed, keyCount, len(before))
}
