package leader

import (
	"time"

	"github.com/drvmesh/drvmesh/scheduler"
)

// What the current term's planner holds, for tests and benchmarks that
// check it against scheduler.Schedule, and for an operator's view.

// Planner returns the current term's planner, nil while this node does
// not lead.
func (l *Leader) Planner() *Planner { return l.sched.Load() }

// NextWake is when the earliest deferred build becomes due (zero if none
// waits).
func (lp *Planner) NextWake() time.Time {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	return lp.nextWake(time.Now())
}

// Has reports whether the planner holds the build.
func (lp *Planner) Has(id string) bool {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	return lp.p != nil && lp.p.Has(id)
}

// Stats are the scheduler planner's counts (zero before the first round).
func (lp *Planner) Stats() scheduler.Stats {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if lp.p == nil {
		return scheduler.Stats{}
	}
	return lp.p.Stats()
}

// Rounds are the rounds planned this term and the time they spent.
func (lp *Planner) Rounds() (int, time.Duration) {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	return lp.rounds, lp.busy
}

// Reread reads the whole state into a new scheduler planner, as a term's
// first round does, and returns how long that took.
func (lp *Planner) Reread() time.Duration {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	start := time.Now()
	lp.rebuild()
	return time.Since(start)
}

// Compare brings the planner up to date and returns its plan and
// scheduler.Schedule's over reference's state, both at the same instant,
// with extra free slots added on every node (extra slots expose the order
// and placement of every ready build, not only the first few). ok is
// false when the state or gossip moved during the read; the caller asks
// again.
func (lp *Planner) Compare(extra int, reference func(now time.Time) (*scheduler.SliceState, scheduler.Config)) (got, want scheduler.Plan, ok bool) {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	idx := lp.st.AppliedIndex()
	lp.sync()
	if lp.p == nil {
		return got, want, false
	}
	now := time.Now()
	ref, cfg := reference(now)
	if lp.st.AppliedIndex() != idx {
		return got, want, false
	}
	if len(ref.NodeList) != len(lp.told) {
		return got, want, false // gossip moved
	}
	for _, nd := range ref.NodeList {
		nd.FreeSlots += extra
	}
	for name, t := range lp.told {
		_ = lp.p.SetCapacity(name, t.FreeSlots+extra, t.Load)
	}
	got = lp.p.Plan(now)
	for name, t := range lp.told {
		_ = lp.p.SetCapacity(name, t.FreeSlots, t.Load)
	}
	want = scheduler.Schedule(ref, cfg, now)
	return got, want, true
}
