package agent

import (
	"context"

	"github.com/drvmesh/drvmesh/consensus"
)

// IndexOwnFiles fills the file-key map from the nars the index says this
// node holds, so that files can be named by store path after a restart.
func (k *Keeper) IndexOwnFiles() {
	st := k.raft.State()
	hps, err := st.NarsHeldBy(k.cfg.Name)
	if err != nil {
		return
	}
	for _, hp := range hps {
		if ni, err := st.NarInfoByHash(hp); err == nil && ni != nil {
			k.files.Note(ni)
		}
	}
}

// EnforceQuota evicts least recently used nars that other nodes hold too,
// and tells the index this node no longer holds them.
func (k *Keeper) EnforceQuota(ctx context.Context) {
	if k.cfg.QuotaBytes <= 0 {
		return
	}
	before := map[string]bool{}
	for _, f := range k.disk.List() {
		before[f.Key()] = true
	}
	freed, err := k.disk.Evict()
	if err != nil {
		k.log.Warn("evict nars", keyErr, err)
	}
	if freed == 0 {
		return
	}
	for _, f := range k.disk.List() {
		delete(before, f.Key())
	}
	for key := range before {
		hp, ok := k.files.HashPart(key)
		if !ok {
			continue
		}
		if _, err := k.apply.ApplyAndCatchUp(ctx, &consensus.SetNarHolder{Hash: hp, Node: k.cfg.Name, Present: false}); err != nil {
			k.log.Warn("record eviction", keyPath, hp, keyErr, err)
		}
	}
	k.log.Info("evicted nars over quota", "bytes", freed, keyCount, len(before))
}
