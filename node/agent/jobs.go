package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
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

// loop watches the replicated state for builds assigned to this
// node and runs them; it also stops running builds that were canceled.
// It reacts to each applied change, so an assignment starts within
// milliseconds of its commit.
func (a *Agent) loop(ctx context.Context) {
	if a.cfg.Builder == "none" {
		return
	}
	changes, unsub := a.raft.Subscribe()
	defer unsub()
	if !a.handBack(ctx) {
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		a.pickUp(ctx)
		select {
		case <-ctx.Done():
			a.waitJobs()
			return
		case <-changes:
		case <-tick.C:
		}
	}
}

func (a *Agent) waitJobs() {
	a.jobsMu.Lock()
	var dones []chan struct{}
	for _, j := range a.jobs {
		j.cancel()
		dones = append(dones, j.done)
	}
	a.jobsMu.Unlock()
	for _, d := range dones {
		<-d
	}
}

// pickUp starts assigned builds up to MaxJobs and cancels running builds
// that are no longer this node's.
func (a *Agent) pickUp(ctx context.Context) {
	st := a.raft.State()
	a.jobsMu.Lock()
	for id, j := range a.jobs {
		b, err := st.GetBuild(id)
		if err == nil && (consensus.Finished(b.State) || b.Node != a.cfg.Name || b.State == consensus.StateQueued) {
			j.cancel()
		}
	}
	free := a.cfg.MaxJobs - len(a.jobs)
	a.jobsMu.Unlock()
	if free <= 0 {
		return
	}
	bs, err := st.ListBuilds(consensus.BuildFilter{State: consensus.StateScheduled})
	if err != nil {
		return
	}
	a.forgetReported(st)
	// Oldest first: ListBuilds is newest first.
	for i := len(bs) - 1; i >= 0 && free > 0; i-- {
		b := bs[i]
		if b.Node != a.cfg.Name {
			continue
		}
		a.jobsMu.Lock()
		_, running := a.jobs[b.ID]
		if r, ok := a.reported[b.ID]; ok && len(b.Attempts) < r {
			// Finished here, but this state has not caught up yet.
			running = true
		}
		if !running {
			jctx, cancel := context.WithCancel(ctx)
			j := &job{id: b.ID, drv: b.Derivation, attempt: len(b.Attempts) + 1, cancel: cancel, done: make(chan struct{})}
			a.log.Debug("picked up build", keyBuild, b.ID, keyDrv, b.Derivation)
			a.jobs[b.ID] = j
			a.wg.Add(1)
			go func() {
				defer a.wg.Done()
				defer close(j.done)
				defer func() {
					a.jobsMu.Lock()
					delete(a.jobs, j.id)
					a.jobsMu.Unlock()
					a.cfg.PushMeta()
				}()
				a.runJob(jctx, j)
			}()
			free--
		}
		a.jobsMu.Unlock()
	}
	a.cfg.PushMeta()
}

// forgetReported drops the reported builds whose attempt the state shows.
func (a *Agent) forgetReported(st *consensus.FSM) {
	a.jobsMu.Lock()
	defer a.jobsMu.Unlock()
	for id, r := range a.reported {
		if b, err := st.GetBuild(id); err != nil || len(b.Attempts) >= r {
			delete(a.reported, id)
		}
	}
}

// runJob takes a build from scheduled to a final state, in steps: record
// the start (while the build runs), open the log, prepare the inputs,
// build and store the outputs, report the result.
func (a *Agent) runJob(ctx context.Context, j *job) {
	log := a.log.With(keyBuild, j.id, keyDrv, j.drv)
	start := time.Now()
	started := a.recordStart(ctx, j, log)
	lf, err := a.openLog(j, log)
	if err != nil {
		a.report(ctx, j, started, &consensus.FinishBuild{ID: j.id, Node: a.cfg.Name, Error: "open build log: " + err.Error()}, nil)
		return
	}
	defer lf.Close()
	fmt.Fprintf(lf, "drvmesh: building %s on %s\n", j.drv, a.cfg.Name)
	fin := &consensus.FinishBuild{ID: j.id, Node: a.cfg.Name}
	prepStart := time.Now()
	in := a.inputsOf(a.raft.State(), j.drv)
	a.phase("prepare", prepStart)
	if len(in.missing) > 0 {
		// The daemon would build what it cannot substitute: report it
		// instead, and the mesh builds it first.
		fmt.Fprintf(lf, "drvmesh: missing inputs: %s\n", strings.Join(in.missing, " "))
		fin.MissingInputs = in.missing
		if a.report(ctx, j, started, fin, nil) {
			log.Info("build waits for missing inputs", "missing", len(fin.MissingInputs))
		}
		return
	}
	recs, ok := a.build(ctx, j, in, lf, fin)
	if !ok {
		<-started
		if j.handBack {
			log.Info("build handed back")
		}
		return // canceled by a user (already final), not ours, or handed back
	}
	lf.Close()
	if !a.report(ctx, j, started, fin, recs) {
		return
	}
	if fin.Success {
		log.Info("build succeeded", keyElapsed, time.Since(start).Round(time.Millisecond))
	} else {
		log.Info("build did not succeed", keyErr, fin.Error, "missing", len(fin.MissingInputs))
	}
}

// recordStart records the start while the build runs: it only has to be
// in the state before the result. If the build is not this node's to
// start (canceled, reassigned), the build is stopped. The channel says
// whether the start was recorded.
func (a *Agent) recordStart(ctx context.Context, j *job, log *slog.Logger) <-chan bool {
	start := time.Now()
	started := make(chan bool, 1)
	go func() {
		_, err := a.apply.ApplyAtLeader(ctx, &consensus.StartBuild{ID: j.id, Node: a.cfg.Name})
		a.phase("start", start)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("start build", keyErr, err)
			}
			j.cancel()
		}
		started <- err == nil
	}()
	return started
}

// openLog creates the build's log file and gives it to the job.
func (a *Agent) openLog(j *job, log *slog.Logger) (*os.File, error) {
	if err := os.MkdirAll(filepath.Join(a.cfg.DataDir, dirLogs), 0o755); err != nil {
		log.Warn("log dir", keyErr, err)
	}
	lf, err := os.OpenFile(a.LogPath(j.id), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	j.logMu.Lock()
	j.logFile = lf
	j.logMu.Unlock()
	return lf, nil
}

// build runs the builder and stores the outputs, filling fin with the
// result; on success it returns the outputs' records. ok is false when
// the build was canceled, handed back or is no longer this node's:
// there is nothing to report.
func (a *Agent) build(ctx context.Context, j *job, in buildInputs, lf io.Writer, fin *consensus.FinishBuild) (recs []consensus.NarInfo, ok bool) {
	buildStart := time.Now()
	res, err := a.builder.Build(ctx, builder.Request{
		DrvPath:     j.drv,
		Substituter: a.cfg.URL(),
		Prepared:    in.known,
		TrustedKeys: []string{a.cfg.Signer.Public().String()},
	}, lf)
	a.phase("build", buildStart)
	a.cfg.BuildSeconds.Observe(time.Since(buildStart).Seconds())
	switch {
	case err == nil:
		outs, rs, perr := a.storeOutputs(ctx, j, res, in.candidates)
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
		return nil, false
	default:
		fin.Error = err.Error()
		// A holder of an input went away during the build: the build
		// waits for it instead of failing.
		if lost := a.unreachable(a.raft.State(), in.needed); len(lost) > 0 {
			fmt.Fprintf(lf, "drvmesh: inputs no holder can send: %s\n", strings.Join(lost, " "))
			fin.Error, fin.MissingInputs = "", lost
		}
	}
	return recs, true
}

// report waits for the start to be recorded, then reports the result
// (see finish) and remembers the attempt reported. It returns false when
// the start was refused: the build is not this node's.
func (a *Agent) report(ctx context.Context, j *job, started <-chan bool, fin *consensus.FinishBuild, recs []consensus.NarInfo) bool {
	if !<-started {
		return false
	}
	a.finish(context.WithoutCancel(ctx), j, fin, recs)
	a.jobsMu.Lock()
	a.reported[j.id] = j.attempt
	a.jobsMu.Unlock()
	return true
}

// finish reports a build's result; a success carries its outputs'
// records, committed with it in one entry. The outputs are then copied
// to other nodes.
func (a *Agent) finish(ctx context.Context, j *job, fin *consensus.FinishBuild, recs []consensus.NarInfo) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	defer a.phase("finish", time.Now())
	var cmd consensus.Command = fin
	apply := a.apply.ApplyAtLeader
	if len(recs) > 0 {
		cmd = &consensus.FinishOutputs{NarInfos: consensus.PutNarInfos{NarInfos: recs, Holder: a.cfg.Name}, Finish: *fin}
		// The copies below read the records from this node's state and
		// tell the asked nodes its index: wait until it has them.
		apply = a.apply.ApplyAndCatchUp
	}
	_, err := apply(ctx, cmd)
	if err != nil {
		a.log.Warn("finish build", keyBuild, j.id, keyErr, err)
		if len(recs) == 0 || !errors.Is(err, consensus.ErrBadTransition) {
			return
		}
		// The build is no longer this node's (canceled meanwhile): its
		// outputs are still good substitutes.
		if _, err := a.apply.ApplyAndCatchUp(ctx, &consensus.PutNarInfos{NarInfos: recs, Holder: a.cfg.Name}); err != nil {
			a.log.Warn("record outputs", keyBuild, j.id, keyErr, err)
			return
		}
	}
	var hps []string
	for _, r := range recs {
		hp, _ := consensus.HashPart(r.StorePath)
		hps = append(hps, hp)
	}
	if len(hps) > 0 {
		a.keep.ReplicateAsync(hps...)
	}
}

// storeOutputs stores every output as a nar and returns the outputs and
// their signed records. The references of each output are found by
// scanning its nar for the candidates (see inputsOf), as the daemon
// itself does; without candidates the builder is asked.
func (a *Agent) storeOutputs(ctx context.Context, j *job, res builder.Result, candidates []string) ([]consensus.Output, []consensus.NarInfo, error) {
	storeStart := time.Now()
	drv, _ := a.raft.State().Drv(j.drv)
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
		nar, err := a.ingestOutput(ctx, path, scan)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		var refs []string
		if scan != nil {
			refs = scan.Found()
		} else if r, ok := a.builder.(builder.Referrer); ok {
			if refs, err = r.References(ctx, path); err != nil {
				return nil, nil, err
			}
		}
		recs = append(recs, a.keep.Record(path, nar, refs, storeBase(j.drv), system, ""))
		outs = append(outs, consensus.Output{Name: name, Path: path, NarHash: nar.NarHash.String(), NarSize: nar.NarSize})
	}
	a.phase("store", storeStart)
	return outs, recs, nil
}

// ingestOutput dumps a built output into the nar store, showing the nar
// to scan on the way if it is not nil.
func (a *Agent) ingestOutput(ctx context.Context, path string, scan *store.RefScanner) (narcache.Nar, error) {
	pr, pw := io.Pipe()
	var w io.Writer = pw
	if scan != nil {
		w = io.MultiWriter(scan, pw)
	}
	go func() { pw.CloseWithError(a.builder.OutputNAR(ctx, path, w)) }()
	defer pr.Close()
	return a.disk.Ingest(ctx, bufio.NewReaderSize(pr, 1<<20), narcache.Expect{})
}

// handBack returns to the queue every build the state gives this node:
// the node just started, so nothing runs here, and whatever the state
// says ran here died with the old process. It does not look at this
// node's own state, which may not have caught up with the log yet (a
// node back within seconds of a crash would see nothing to hand back,
// and the leader requeues only what gossip declares dead): the
// RequeueNode applies at the leader, which has the latest state. It
// waits until this node's state includes the hand-back, so every build
// pickUp sees afterwards was assigned after it. It retries until it
// succeeds and reports false if the node stopped first.
func (a *Agent) handBack(ctx context.Context) bool {
	for {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ids, err := a.apply.ApplyAndCatchUp(actx, &consensus.RequeueNode{Node: a.cfg.Name})
		cancel()
		if err == nil {
			if len(ids) > 0 {
				a.log.Info("handed back builds left from before the restart", keyCount, len(ids))
			}
			return true
		}
		if ctx.Err() == nil {
			a.log.Debug("hand back builds", keyErr, err)
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(500 * time.Millisecond):
		}
	}
}
