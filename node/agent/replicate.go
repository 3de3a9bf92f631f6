package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/gossip"
	"github.com/drvmesh/drvmesh/narcache"
	"github.com/drvmesh/drvmesh/node/internal/httpjson"
	"github.com/drvmesh/drvmesh/store"
)

// Every nar is kept on MinCopies nodes. The node that makes a nar (a
// build's output, an upload) asks other nodes to copy it; when a holder
// dies, the leader asks the survivors to copy what it held. A copy is
// fetched over libp2p from a holder and verified before it is kept.

// LocalFile returns the first form of a nar this node holds on disk.
func (k *Keeper) LocalFile(ni *consensus.NarInfo) (narcache.File, bool) {
	_, files, err := StoreNarInfo(ni)
	if err != nil {
		return narcache.File{}, false
	}
	for _, f := range files {
		if _, ok := k.disk.Stat(f.Key()); ok {
			return f, true
		}
	}
	return narcache.File{}, false
}

// ReplicateLocal fetches a nar from a holder and records this node as
// holding it too.
func (k *Keeper) ReplicateLocal(ctx context.Context, hashPart string) error {
	ni, err := k.raft.State().NarInfoByHash(hashPart)
	if err != nil {
		return err
	}
	k.files.Note(ni)
	if _, ok := k.LocalFile(ni); !ok {
		_, files, err := StoreNarInfo(ni)
		if err != nil || len(files) == 0 {
			return fmt.Errorf("%w: narinfo of %s has no files", consensus.ErrNotFound, ni.StorePath)
		}
		var errs []error
		ok := false
		for _, h := range k.files.Holders(files[0].Key()) {
			if _, err := k.p2p.Replicate(ctx, h, files[0]); err != nil {
				errs = append(errs, err)
				continue
			}
			ok = true
			break
		}
		if !ok {
			return fmt.Errorf("no holder could send %s: %w", ni.StorePath, errors.Join(errs...))
		}
	}
	_, err = k.apply.ApplyAndCatchUp(ctx, &consensus.SetNarHolder{Hash: hashPart, Node: k.cfg.Name, Present: true})
	return err
}

// aliveHolders counts a nar's holders that gossip says are alive.
func (k *Keeper) aliveHolders(ni *consensus.NarInfo) int {
	c := 0
	for _, h := range ni.Holders {
		if m, ok := k.members.Member(h); ok && m.Status == gossip.StatusAlive {
			c++
		}
	}
	return c
}

// ensureCopies asks alive nodes that lack a nar to copy it until it has
// MinCopies alive holders (or every alive node holds it).
func (k *Keeper) ensureCopies(ctx context.Context, hashPart string) error {
	ni, err := k.raft.State().NarInfoByHash(hashPart)
	if err != nil {
		return err
	}
	want := k.minCopies()
	have := k.aliveHolders(ni)
	if have >= want {
		return nil
	}
	holds := map[string]bool{}
	for _, h := range ni.Holders {
		holds[h] = true
	}
	var cands []gossip.Member
	for _, m := range k.members.Members() {
		if m.Status == gossip.StatusAlive && !holds[m.Name] {
			cands = append(cands, m)
		}
	}
	// Most free disk first.
	sort.Slice(cands, func(i, j int) bool { return cands[i].Meta.FreeDisk > cands[j].Meta.FreeDisk })
	var errs []error
	for _, m := range cands {
		if have >= want {
			break
		}
		if err := k.AskReplicate(ctx, m.Name, hashPart); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m.Name, err))
			continue
		}
		have++
	}
	if have < want && len(errs) > 0 {
		return errors.Join(errs...)
	}
	return nil
}

func (k *Keeper) minCopies() int {
	if st, err := k.raft.State().Settings(); err == nil && st.MinCopies > 0 {
		return st.MinCopies
	}
	return k.cfg.MinCopies
}

// replicateRequest is the body of /rpc/replicate.
type replicateRequest struct {
	HashPart string `json:"hash_part"`
	// Index is the asker's applied raft index; the asked node waits until
	// its own state has it before looking the nar up.
	Index uint64 `json:"index,omitempty"`
}

// Bounds of a copy request. The asked node waits at most
// replicateCatchUp for its state to hold the nar's record; the whole
// request may take Config.CopyWait (copyWait by default) plus the time
// the nar takes at copyRate, so a paused node cannot hold a copy for
// long: the asker tries another.
const (
	replicateCatchUp = 5 * time.Second
	copyWait         = 20 * time.Second
	copyRate         = 8 << 20 // bytes per second
)

// copyTimeout bounds a copy request of a nar of size bytes.
func (k *Keeper) copyTimeout(size int64) time.Duration {
	base := k.cfg.CopyWait
	if base <= 0 {
		base = copyWait
	}
	return base + time.Duration(size/copyRate)*time.Second
}

// AskReplicate asks the node name over RPC to copy a nar (this node
// copies it itself).
func (k *Keeper) AskReplicate(ctx context.Context, name, hashPart string) error {
	if name == k.cfg.Name {
		return k.ReplicateLocal(ctx, hashPart)
	}
	st := k.raft.State()
	rec, err := st.Node(name)
	if err != nil || rec == nil {
		return fmt.Errorf("%w: node %s", consensus.ErrNotFound, name)
	}
	var size int64
	if ni, err := st.NarInfoByHash(hashPart); err == nil {
		size = ni.NarSize
	}
	// This node's state has the nar's record (the asker reads it first),
	// so its applied index is at or past the entry that committed it:
	// the asked node waits until its own state has that index.
	body, _ := json.Marshal(replicateRequest{HashPart: hashPart, Index: st.AppliedIndex()})
	ctx, cancel := context.WithTimeout(ctx, k.copyTimeout(size))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+rec.Raft+"/rpc/replicate", bytes.NewReader(body))
	if err != nil {
		return err
	}
	// A copy may take longer than the RPC client's timeout: ctx bounds it.
	client := *k.cfg.RPC
	client.Timeout = 0
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s", httpjson.ErrorText(b))
	}
	return nil
}

// ReplicateAsync runs ensureCopies in the background for new nars. It
// gives up once the node stops (its run context ends), so that a stop
// never waits for retries or transfers.
func (k *Keeper) ReplicateAsync(hashParts ...string) {
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		ctx, cancel := context.WithTimeout(k.run, 30*time.Minute)
		defer cancel()
		for _, hp := range hashParts {
			for attempt := 0; attempt < 5; attempt++ {
				err := k.ensureCopies(ctx, hp)
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					return
				}
				k.log.Warn("replicate nar", keyPath, hp, keyErr, err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Duration(attempt+1) * time.Second):
				}
			}
		}
	}()
}

// Record builds the index record for a nar this node holds, signed.
func (k *Keeper) Record(path string, nar narcache.Nar, refs []string, deriver, system, ca string) consensus.NarInfo {
	rec := consensus.NarInfo{
		StorePath: path, NarHash: nar.NarHash.String(), NarSize: nar.NarSize,
		Deriver: deriver, System: system, CA: ca,
	}
	for _, r := range refs {
		rec.References = append(rec.References, storeBase(r))
	}
	sort.Strings(rec.References)
	for _, f := range nar.Files {
		rec.Files = append(rec.Files, consensus.NarFile{Compression: f.Compression, FileHash: f.FileHash.String(), FileSize: f.FileSize})
	}
	// Sign once, here; every node serves the same signature.
	info := &store.NarInfo{StorePath: path, NarHash: nar.NarHash, NarSize: nar.NarSize, References: rec.References}
	k.cfg.Signer.SignNarInfo(info, k.cfg.StoreDir)
	rec.Sigs = info.Sigs
	return rec
}

// storeBase is a store path's base name (HASH-NAME).
func storeBase(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }

// StoreNarInfo converts an index record to the store form the handler
// renders.
func StoreNarInfo(ni *consensus.NarInfo) (*store.NarInfo, []narcache.File, error) {
	nh, err := store.ParseHash(ni.NarHash)
	if err != nil {
		return nil, nil, err
	}
	info := &store.NarInfo{
		StorePath: ni.StorePath, NarHash: nh, NarSize: ni.NarSize,
		References: ni.References, Deriver: ni.Deriver, System: ni.System,
		Sigs: ni.Sigs, CA: ni.CA,
	}
	var files []narcache.File
	for _, f := range ni.Files {
		fh, err := store.ParseHash(f.FileHash)
		if err != nil {
			return nil, nil, err
		}
		files = append(files, narcache.File{Compression: f.Compression, FileHash: fh, FileSize: f.FileSize, NarHash: nh, NarSize: ni.NarSize})
	}
	return info, files, nil
}

// handleReplicate makes this node keep a copy of a nar another holds.
func (k *Keeper) handleReplicate(w http.ResponseWriter, r *http.Request) {
	var req replicateRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
		apiError(w, http.StatusBadRequest, "bad replicate request: %v", err)
		return
	}
	cctx, cancel := context.WithTimeout(r.Context(), replicateCatchUp)
	err := k.apply.CatchUp(cctx, req.Index)
	cancel()
	if err != nil {
		apiError(w, http.StatusServiceUnavailable, "replicate %s: %v", req.HashPart, err)
		return
	}
	if err := k.ReplicateLocal(r.Context(), req.HashPart); err != nil {
		apiError(w, statusOf(err), "replicate %s: %v", req.HashPart, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"ok": req.HashPart})
}
