package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/drvmesh/drvmesh/builder"
	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/narcache"
)

// job is one build running on this node.
type job struct {
	id       string
	drv      string
	cancel   context.CancelFunc
	done     chan struct{}
	handBack bool // stopped because the node is leaving: not a failure
	logMu    sync.Mutex
	logFile  *os.File
}

// workerLoop watches the replicated state for builds assigned to this
// node and runs them; it also stops running builds that were canceled.
// It reacts to each applied change, so an assignment starts within
// milliseconds of its commit.
func (n *Node) workerLoop(ctx context.Context) {
	if n.cfg.Builder == "none" {
		return
	}
	changes, unsub := n.raft.Subscribe()
	defer unsub()
	if !n.handBackStale(ctx) {
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		n.pickUp(ctx)
		select {
		case <-ctx.Done():
			n.waitJobs()
			return
		case <-changes:
		case <-tick.C:
		}
	}
}

func (n *Node) waitJobs() {
	n.jobsMu.Lock()
	var dones []chan struct{}
	for _, j := range n.jobs {
		j.cancel()
		dones = append(dones, j.done)
	}
	n.jobsMu.Unlock()
	for _, d := range dones {
		<-d
	}
}

// pickUp starts assigned builds up to MaxJobs and cancels running builds
// that are no longer this node's.
func (n *Node) pickUp(ctx context.Context) {
	st := n.raft.State()
	n.jobsMu.Lock()
	for id, j := range n.jobs {
		b, err := st.GetBuild(id)
		if err == nil && (consensus.Finished(b.State) || b.Node != n.cfg.Name || b.State == consensus.StateQueued) {
			j.cancel()
		}
	}
	free := n.cfg.MaxJobs - len(n.jobs)
	n.jobsMu.Unlock()
	if free <= 0 {
		return
	}
	bs, err := st.ListBuilds(consensus.BuildFilter{State: consensus.StateScheduled})
	if err != nil {
		return
	}
	// Oldest first: ListBuilds is newest first.
	for i := len(bs) - 1; i >= 0 && free > 0; i-- {
		b := bs[i]
		if b.Node != n.cfg.Name {
			continue
		}
		n.jobsMu.Lock()
		_, running := n.jobs[b.ID]
		if !running {
			jctx, cancel := context.WithCancel(ctx)
			j := &job{id: b.ID, drv: b.Derivation, cancel: cancel, done: make(chan struct{})}
			n.jobs[b.ID] = j
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				defer close(j.done)
				defer func() {
					n.jobsMu.Lock()
					delete(n.jobs, j.id)
					n.jobsMu.Unlock()
					n.pushMeta()
				}()
				n.runJob(jctx, j)
			}()
			free--
		}
		n.jobsMu.Unlock()
	}
	n.pushMeta()
}

// runJob takes a build from scheduled to a final state.
func (n *Node) runJob(ctx context.Context, j *job) {
	log := n.log.With(keyBuild, j.id, keyDrv, j.drv)
	if _, err := n.apply(ctx, &consensus.StartBuild{ID: j.id, Node: n.cfg.Name}); err != nil {
		log.Warn("start build", keyErr, err)
		return
	}
	start := time.Now()
	if err := os.MkdirAll(filepath.Join(n.cfg.DataDir, dirLogs), 0o755); err != nil {
		log.Warn("log dir", keyErr, err)
	}
	lf, err := os.OpenFile(n.logPath(j.id), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		n.finish(ctx, j, &consensus.FinishBuild{ID: j.id, Node: n.cfg.Name, Error: "open build log: " + err.Error()})
		return
	}
	j.logMu.Lock()
	j.logFile = lf
	j.logMu.Unlock()
	fmt.Fprintf(lf, "drvmesh: building %s on %s\n", j.drv, n.cfg.Name)
	res, err := n.builder.Build(ctx, builder.Request{
		DrvPath:     j.drv,
		Substituter: n.URL(),
		TrustedKeys: []string{n.signer.Public().String()},
	}, lf)
	n.metrics.buildSeconds.Observe(time.Since(start).Seconds())
	fin := &consensus.FinishBuild{ID: j.id, Node: n.cfg.Name}
	switch {
	case err == nil:
		outs, perr := n.publishOutputs(ctx, j, res)
		if perr != nil {
			fmt.Fprintf(lf, "drvmesh: storing the outputs failed: %v\n", perr)
			fin.Error = "store outputs: " + perr.Error()
		} else {
			fin.Success, fin.Outputs = true, outs
		}
	case errors.Is(err, builder.ErrMissingInputs):
		fmt.Fprintf(lf, "drvmesh: missing inputs: %s\n", strings.Join(res.MissingInputs, " "))
		fin.MissingInputs = res.MissingInputs
		if len(fin.MissingInputs) == 0 {
			fin.Error = err.Error()
		}
	case errors.Is(err, builder.ErrCanceled) || ctx.Err() != nil:
		lf.Close()
		if j.handBack {
			log.Info("build handed back")
		}
		return // canceled by a user (already final) or handed back
	default:
		fin.Error = err.Error()
	}
	lf.Close()
	n.finish(context.WithoutCancel(ctx), j, fin)
	if fin.Success {
		log.Info("build succeeded", keyElapsed, time.Since(start).Round(time.Millisecond))
	} else {
		log.Info("build did not succeed", keyErr, fin.Error, "missing", len(fin.MissingInputs))
	}
}

func (n *Node) finish(ctx context.Context, j *job, fin *consensus.FinishBuild) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := n.apply(ctx, fin); err != nil {
		n.log.Warn("finish build", keyBuild, j.id, keyErr, err)
	}
}

// publishOutputs stores every output as a nar, records it in the index,
// and asks other nodes to keep copies.
func (n *Node) publishOutputs(ctx context.Context, j *job, res builder.Result) ([]consensus.Output, error) {
	drv, _ := n.raft.State().Drv(j.drv)
	system := ""
	if drv != nil {
		system = drv.System
	}
	var outs []consensus.Output
	var recs []consensus.NarInfo
	for name, path := range res.Outputs {
		nar, err := n.ingestOutput(ctx, path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		var refs []string
		if r, ok := n.builder.(builder.Referrer); ok {
			if refs, err = r.References(ctx, path); err != nil {
				return nil, err
			}
		}
		recs = append(recs, n.narInfoRecord(path, nar, refs, baseName(j.drv), system, ""))
		outs = append(outs, consensus.Output{Name: name, Path: path, NarHash: nar.NarHash.String(), NarSize: nar.NarSize})
	}
	if _, err := n.apply(ctx, &consensus.PutNarInfos{NarInfos: recs, Holder: n.cfg.Name}); err != nil {
		return nil, fmt.Errorf("record outputs: %w", err)
	}
	var hps []string
	for _, r := range recs {
		hp, _ := consensus.HashPart(r.StorePath)
		hps = append(hps, hp)
	}
	n.replicateAsync(hps...)
	return outs, nil
}

// ingestOutput dumps a built output into the nar store.
func (n *Node) ingestOutput(ctx context.Context, path string) (narcache.Nar, error) {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(n.builder.OutputNAR(ctx, path, pw)) }()
	defer pr.Close()
	return n.disk.Ingest(ctx, bufio.NewReaderSize(pr, 1<<20), narcache.Expect{})
}

// handBackStale returns to the queue the builds the state still gives
// this node from before a restart: their processes died with the old
// node. It runs once, before this node picks up new work, and reports
// false if the node stopped first.
func (n *Node) handBackStale(ctx context.Context) bool {
	for {
		st := n.raft.State()
		stale := false
		for _, state := range []string{consensus.StateScheduled, consensus.StateBuilding} {
			bs, _ := st.ListBuilds(consensus.BuildFilter{State: state})
			for _, b := range bs {
				stale = stale || b.Node == n.cfg.Name
			}
		}
		if !stale {
			return true
		}
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ids, err := n.apply(actx, &consensus.RequeueNode{Node: n.cfg.Name})
		cancel()
		if err == nil {
			n.log.Info("handed back builds left from before the restart", keyCount, len(ids))
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(500 * time.Millisecond):
		}
	}
}
