package agent

import (
	"context"

	"github.com/drvmesh/drvmesh/consensus"
)

// IndexOwnFiles fills the file-key map from the nars the index says this
// node holds, so that files can be named by store path after a restart.
func (a *Agent) IndexOwnFiles() {
	st := a.raft.State()
	hps, err := st.NarsHeldBy(a.cfg.Name)
	if err != nil {
		return
	}
	for _, hp := range hps {
		if ni, err := st.NarInfoByHash(hp); err == nil && ni != nil {
			a.files.Note(ni)
		}
	}
}

// EnforceQuota evicts least recently used nars that other nodes hold too,
// and tells the index this node no longer holds them.
func (a *Agent) EnforceQuota(ctx context.Context) {
	if a.cfg.QuotaBytes <= 0 {
		return
	}
	before := map[string]bool{}
	for _, f := range a.disk.List() {
		before[f.Key()] = true
	}
	freed, err := a.disk.Evict()
	if err != nil {
		a.log.Warn("evict nars", keyErr, err)
	}
	if freed == 0 {
		return
	}
	for _, f := range a.disk.List() {
		delete(before, f.Key())
	}
	for key := range before {
		hp, ok := a.files.HashPart(key)
		if !ok {
			continue
		}
		if _, err := a.apply.ApplyAndCatchUp(ctx, &consensus.SetNarHolder{Hash: hp, Node: a.cfg.Name, Present: false}); err != nil {
			a.log.Warn("record eviction", keyPath, hp, keyErr, err)
		}
	}
	a.log.Info("evicted nars over quota", "bytes", freed, keyCount, len(before))
}
