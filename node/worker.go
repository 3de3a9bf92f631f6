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
	"github.com/drvmesh/drvmesh/store"
)

// job is one build running on this node.
type job struct {
	id       string
	drv      string
	attempt  int // the attempt this run is: attempts before it + 1
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
	n.forgetReported(st)
	// Oldest first: ListBuilds is newest first.
	for i := len(bs) - 1; i >= 0 && free > 0; i-- {
		b := bs[i]
		if b.Node != n.cfg.Name {
			continue
		}
		n.jobsMu.Lock()
		_, running := n.jobs[b.ID]
		if r, ok := n.reported[b.ID]; ok && len(b.Attempts) < r {
			// Finished here, but this state has not caught up yet.
			running = true
		}
		if !running {
			jctx, cancel := context.WithCancel(ctx)
			j := &job{id: b.ID, drv: b.Derivation, attempt: len(b.Attempts) + 1, cancel: cancel, done: make(chan struct{})}
			n.log.Debug("picked up build", keyBuild, b.ID, keyDrv, b.Derivation)
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

// forgetReported drops the reported builds whose attempt the state shows.
func (n *Node) forgetReported(st *consensus.FSM) {
	n.jobsMu.Lock()
	defer n.jobsMu.Unlock()
	for id, r := range n.reported {
		if b, err := st.GetBuild(id); err != nil || len(b.Attempts) >= r {
			delete(n.reported, id)
		}
	}
}

// runJob takes a build from scheduled to a final state.
func (n *Node) runJob(ctx context.Context, j *job) {
	log := n.log.With(keyBuild, j.id, keyDrv, j.drv)
	start := time.Now()
	// The start is recorded while the build runs: it only has to be in
	// the state before the result. If the build is not this node's to
	// start (canceled, reassigned), the build is stopped.
	started := make(chan bool, 1)
	go func() {
		_, err := n.applyAtLeader(ctx, &consensus.StartBuild{ID: j.id, Node: n.cfg.Name})
		n.metrics.phase("start", start)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("start build", keyErr, err)
			}
			j.cancel()
		}
		started <- err == nil
	}()
	var recs []consensus.NarInfo // the outputs' records, on success
	finish := func(fin *consensus.FinishBuild) bool {
		if !<-started {
			return false
		}
		n.finish(context.WithoutCancel(ctx), j, fin, recs)
		n.jobsMu.Lock()
		n.reported[j.id] = j.attempt
		n.jobsMu.Unlock()
		return true
	}
	if err := os.MkdirAll(filepath.Join(n.cfg.DataDir, dirLogs), 0o755); err != nil {
		log.Warn("log dir", keyErr, err)
	}
	lf, err := os.OpenFile(n.logPath(j.id), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		finish(&consensus.FinishBuild{ID: j.id, Node: n.cfg.Name, Error: "open build log: " + err.Error()})
		return
	}
	defer lf.Close()
	j.logMu.Lock()
	j.logFile = lf
	j.logMu.Unlock()
	fmt.Fprintf(lf, "drvmesh: building %s on %s\n", j.drv, n.cfg.Name)
	fin := &consensus.FinishBuild{ID: j.id, Node: n.cfg.Name}
	prepStart := time.Now()
	in := n.inputsOf(n.raft.State(), j.drv)
	n.metrics.phase("prepare", prepStart)
	if len(in.missing) > 0 {
		// The daemon would build what it cannot substitute: report it
		// instead, and the mesh builds it first.
		fmt.Fprintf(lf, "drvmesh: missing inputs: %s\n", strings.Join(in.missing, " "))
		fin.MissingInputs = in.missing
		if finish(fin) {
			log.Info("build waits for missing inputs", "missing", len(fin.MissingInputs))
		}
		return
	}
	buildStart := time.Now()
	res, err := n.builder.Build(ctx, builder.Request{
		DrvPath:     j.drv,
		Substituter: n.URL(),
		Prepared:    in.known,
		TrustedKeys: []string{n.creds.Signer.Public().String()},
	}, lf)
	n.metrics.phase("build", buildStart)
	n.metrics.buildSeconds.Observe(time.Since(buildStart).Seconds())
	switch {
	case err == nil:
		outs, rs, perr := n.storeOutputs(ctx, j, res, in.candidates)
		if perr != nil {
			fmt.Fprintf(lf, "drvmesh: storing the outputs failed: %v\n", perr)
			fin.Error = "store outputs: " + perr.Error()
		} else {
			fin.Success, fin.Outputs, recs = true, outs, rs
		}
	case errors.Is(err, builder.ErrMissingInputs):
		fmt.Fprintf(lf, "drvmesh: missing inputs: %s\n", strings.Join(res.MissingInputs, " "))
		fin.MissingInputs = res.MissingInputs
		if len(fin.MissingInputs) == 0 {
			fin.Error = err.Error()
		}
	case errors.Is(err, builder.ErrCanceled) || ctx.Err() != nil:
		<-started
		if j.handBack {
			log.Info("build handed back")
		}
		return // canceled by a user (already final), not ours, or handed back
	default:
		fin.Error = err.Error()
	}
	lf.Close()
	if !finish(fin) {
		return
	}
	if fin.Success {
		log.Info("build succeeded", keyElapsed, time.Since(start).Round(time.Millisecond))
	} else {
		log.Info("build did not succeed", keyErr, fin.Error, "missing", len(fin.MissingInputs))
	}
}

// finish reports a build's result; a success carries its outputs'
// records, committed with it in one entry. The outputs are then copied
// to other nodes.
func (n *Node) finish(ctx context.Context, j *job, fin *consensus.FinishBuild, recs []consensus.NarInfo) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	defer n.metrics.phase("finish", time.Now())
	var cmd consensus.Command = fin
	if len(recs) > 0 {
		cmd = &consensus.FinishOutputs{NarInfos: consensus.PutNarInfos{NarInfos: recs, Holder: n.cfg.Name}, Finish: *fin}
	}
	_, err := n.applyAtLeader(ctx, cmd)
	if err != nil {
		n.log.Warn("finish build", keyBuild, j.id, keyErr, err)
		if len(recs) == 0 || !errors.Is(err, consensus.ErrBadTransition) {
			return
		}
		// The build is no longer this node's (canceled meanwhile): its
		// outputs are still good substitutes.
		if _, err := n.applyAtLeader(ctx, &consensus.PutNarInfos{NarInfos: recs, Holder: n.cfg.Name}); err != nil {
			n.log.Warn("record outputs", keyBuild, j.id, keyErr, err)
			return
		}
	}
	var hps []string
	for _, r := range recs {
		hp, _ := consensus.HashPart(r.StorePath)
		hps = append(hps, hp)
	}
	if len(hps) > 0 {
		n.replicateAsync(hps...)
	}
}

// storeOutputs stores every output as a nar and returns the outputs and
// their signed records. The references of each output are found by
// scanning its nar for the candidates (see inputsOf), as the daemon
// itself does; without candidates the builder is asked.
func (n *Node) storeOutputs(ctx context.Context, j *job, res builder.Result, candidates []string) ([]consensus.Output, []consensus.NarInfo, error) {
	storeStart := time.Now()
	drv, _ := n.raft.State().Drv(j.drv)
	system := ""
	if drv != nil {
		system = drv.System
	}
	var outs []consensus.Output
	var recs []consensus.NarInfo
	for name, path := range res.Outputs {
		var scan *store.RefScanner
		if candidates != nil {
			scan = store.NewRefScanner(candidates)
		}
		nar, err := n.ingestOutput(ctx, path, scan)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		var refs []string
		if scan != nil {
			refs = scan.Found()
		} else if r, ok := n.builder.(builder.Referrer); ok {
			if refs, err = r.References(ctx, path); err != nil {
				return nil, nil, err
			}
		}
		recs = append(recs, n.narInfoRecord(path, nar, refs, storeBase(j.drv), system, ""))
		outs = append(outs, consensus.Output{Name: name, Path: path, NarHash: nar.NarHash.String(), NarSize: nar.NarSize})
	}
	n.metrics.phase("store", storeStart)
	return outs, recs, nil
}

// ingestOutput dumps a built output into the nar store, showing the nar
// to scan on the way if it is not nil.
func (n *Node) ingestOutput(ctx context.Context, path string, scan *store.RefScanner) (narcache.Nar, error) {
	pr, pw := io.Pipe()
	var w io.Writer = pw
	if scan != nil {
		w = io.MultiWriter(scan, pw)
	}
	go func() { pw.CloseWithError(n.builder.OutputNAR(ctx, path, w)) }()
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
