package leader

import (
	"container/heap"
	"slices"
	"sync"
	"time"

	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/scheduler"
)

// Planner keeps a scheduler.Planner in step with the replicated
// state for one term of leadership. It reads the whole state once, then
// follows a consensus change feed: a round costs what changed since the
// previous one, not the size of the queue. A build is queued for the
// scheduler when it is queued and waits for no missing path; an input
// derivation is available when no unfinished build exists for it; the
// input nars are the outputs of inputs the mesh holds, with their sizes.
type Planner struct {
	l    *Leader
	st   *consensus.FSM
	feed *consensus.ChangeFeed

	mu sync.Mutex // held while the planner is read or changed
	p  *scheduler.Planner

	live    map[string]liveBuild // unfinished builds by id
	pending map[string]int       // drv → its unfinished builds
	used    map[string]int       // node → builds scheduled or building there

	planned    map[string]*scheduler.Build    // builds the planner holds
	dependents map[string]map[string]struct{} // input drv → planned builds using it
	outputOf   map[string][]string            // output hash part → input drvs producing it
	drvs       map[string]*drvInfo            // derivations read so far (records never change)
	nars       map[string]narState            // hash part → presence, for outputOf's keys
	defers     deferHeap                      // DeferUntil of planned builds, lazily pruned

	recs    []consensus.Node           // admission records; nil: read again
	told    map[string]*scheduler.Node // nodes the planner holds (Nars nil)
	holders map[string][]string        // hash part → nodes maybe told to hold it

	waitingChanged bool // a build started waiting for inputs, or one failed for good

	rounds int           // rounds planned this term
	busy   time.Duration // time they spent updating and planning
}

type liveBuild struct {
	drv, state, node string
}

type drvInfo struct {
	features []string
	inputs   []drvInput // sorted by drv
	outputs  map[string]string
}

type drvInput struct {
	drv   string
	names []string
}

type narState struct {
	present bool
	size    int64
}

// newLeaderPlanner opens the change feed; the first round reads the state.
func (l *Leader) newLeaderPlanner() *Planner {
	st := l.raft.State()
	lp := &Planner{l: l, st: st, feed: st.WatchChanges()}
	l.sched.Store(lp)
	return lp
}

func (lp *Planner) close() {
	lp.l.sched.CompareAndSwap(lp, nil)
	lp.feed.Close()
}

// changed signals that the state changed since the last round.
func (lp *Planner) changed() <-chan struct{} { return lp.feed.C() }

// takeWaiting reports, once, whether builds started waiting for missing
// inputs, or failed or were canceled (their waiting dependents may have to
// fail), since the last call: only then has submitMissing work to do.
func (lp *Planner) takeWaiting() bool {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	w := lp.waitingChanged
	lp.waitingChanged = false
	return w
}

// makeBuild is the scheduler's view of a queued build.
func (lp *Planner) makeBuild(b *consensus.Build, miss map[string]bool) *scheduler.Build {
	sb := &scheduler.Build{
		ID: b.ID, Drv: b.Derivation, Priority: b.Priority, System: b.System,
		Tags: b.Tags, Submitted: b.CreatedAt, DeferUntil: b.DeferUntil, FailedOn: b.FailedNodes,
	}
	lp.fill(sb, miss)
	return sb
}

// baseOf copies a build's own fields, leaving what fill computes.
func baseOf(old *scheduler.Build) *scheduler.Build {
	return &scheduler.Build{
		ID: old.ID, Drv: old.Drv, Priority: old.Priority, System: old.System,
		Tags: old.Tags, Submitted: old.Submitted, DeferUntil: old.DeferUntil, FailedOn: old.FailedOn,
	}
}

// fill computes features, inputs and input nars from the derivation
// records, the pending counts and the nar records.
func (lp *Planner) fill(sb *scheduler.Build, miss map[string]bool) {
	d := lp.drv(sb.Drv, miss)
	if d == nil {
		return
	}
	sb.Features = d.features
	for _, in := range d.inputs {
		if id := lp.drv(in.drv, miss); id != nil {
			for _, name := range in.names {
				p := id.outputs[name]
				if p == "" {
					continue
				}
				hp, err := consensus.HashPart(p)
				if err != nil {
					continue
				}
				if !slices.Contains(lp.outputOf[hp], in.drv) {
					lp.outputOf[hp] = append(lp.outputOf[hp], in.drv)
				}
				if ns := lp.nar(hp); ns.present {
					sb.InputNars = append(sb.InputNars, scheduler.Nar{Path: hp, Size: ns.size})
				}
			}
		}
		sb.Inputs = append(sb.Inputs, scheduler.Input{Drv: in.drv, Available: lp.pending[in.drv] == 0})
	}
}

// drv returns a derivation's record, reading it once; records never
// change, but one may be written later, so a miss is remembered only for
// the current batch.
func (lp *Planner) drv(path string, miss map[string]bool) *drvInfo {
	if d, ok := lp.drvs[path]; ok {
		return d
	}
	if miss[path] {
		return nil
	}
	rec, err := lp.st.Drv(path)
	if err != nil || rec == nil {
		miss[path] = true
		return nil
	}
	d := &drvInfo{features: rec.Features, outputs: rec.Outputs}
	for in, names := range rec.InputDrvs {
		d.inputs = append(d.inputs, drvInput{drv: in, names: names})
	}
	slices.SortFunc(d.inputs, func(a, b drvInput) int {
		if a.drv < b.drv {
			return -1
		}
		if a.drv > b.drv {
			return 1
		}
		return 0
	})
	lp.drvs[path] = d
	return d
}

// nar returns whether a nar is held and its size, reading it once; the
// feed keeps it current for the hash parts in outputOf.
func (lp *Planner) nar(hp string) narState {
	if ns, ok := lp.nars[hp]; ok {
		return ns
	}
	ns := lp.readNar(hp)
	lp.nars[hp] = ns
	return ns
}

func (lp *Planner) readNar(hp string) narState {
	ni, err := lp.st.NarInfoByHash(hp)
	if err != nil || ni == nil {
		return narState{}
	}
	return narState{present: len(ni.Holders) > 0, size: ni.NarSize}
}

// upsert gives the planner a build (new or replaced) and indexes it.
func (lp *Planner) upsert(sb *scheduler.Build) {
	old := lp.planned[sb.ID]
	if old != nil {
		lp.unindex(old)
	}
	if err := lp.p.Upsert(sb); err != nil {
		lp.l.log.Debug("skip build the scheduler cannot take", keyBuild, sb.ID, keyErr, err)
		if lp.planned[sb.ID] != nil {
			_ = lp.p.Remove(sb.ID)
			delete(lp.planned, sb.ID)
		}
		return
	}
	lp.index(sb, old == nil || !old.DeferUntil.Equal(sb.DeferUntil))
}

func (lp *Planner) remove(id string) {
	if old := lp.planned[id]; old != nil {
		lp.unindex(old)
		delete(lp.planned, id)
	}
	_ = lp.p.Remove(id)
}

// index records a planned build under its inputs, and its DeferUntil
// when newly set.
func (lp *Planner) index(sb *scheduler.Build, deferChanged bool) {
	lp.planned[sb.ID] = sb
	for _, in := range sb.Inputs {
		ds := lp.dependents[in.Drv]
		if ds == nil {
			ds = map[string]struct{}{}
			lp.dependents[in.Drv] = ds
		}
		ds[sb.ID] = struct{}{}
	}
	if deferChanged && !sb.DeferUntil.IsZero() {
		heap.Push(&lp.defers, deferred{at: sb.DeferUntil, id: sb.ID})
	}
}

func (lp *Planner) unindex(sb *scheduler.Build) {
	for _, in := range sb.Inputs {
		if ds := lp.dependents[in.Drv]; ds != nil {
			delete(ds, sb.ID)
			if len(ds) == 0 {
				delete(lp.dependents, in.Drv)
			}
		}
	}
}

// narChanged follows a nar record: its holders in the planner, and, for
// the outputs of input derivations, presence and size (their drvs go to
// dirty when either changes).
func (lp *Planner) narChanged(hp string, dirty map[string]bool) {
	ni, err := lp.st.NarInfoByHash(hp)
	var holders []string
	ns := narState{}
	if err == nil && ni != nil {
		holders = ni.Holders
		ns = narState{present: len(ni.Holders) > 0, size: ni.NarSize}
	}
	for _, h := range lp.holders[hp] {
		if !slices.Contains(holders, h) && lp.told[h] != nil {
			_ = lp.p.RemoveNar(h, hp)
		}
	}
	for _, h := range holders {
		if lp.told[h] != nil {
			_ = lp.p.AddNar(h, hp)
		}
	}
	if len(holders) == 0 {
		delete(lp.holders, hp)
	} else {
		lp.holders[hp] = slices.Clone(holders)
	}
	if drvs, ok := lp.outputOf[hp]; ok {
		if old, seen := lp.nars[hp]; !seen || old != ns {
			lp.nars[hp] = ns
			for _, d := range drvs {
				dirty[d] = true
			}
		}
	}
}

// deferred is one DeferUntil of a planned build; entries of builds gone
// or changed are dropped when they reach the top.
type deferred struct {
	at time.Time
	id string
}

type deferHeap []deferred

func (h deferHeap) Len() int           { return len(h) }
func (h deferHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h deferHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *deferHeap) Push(x any)        { *h = append(*h, x.(deferred)) }
func (h *deferHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
