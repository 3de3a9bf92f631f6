package leader

import (
	"container/heap"
	"context"
	"slices"
	"time"

	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/gossip"
	"github.com/drvmesh/drvmesh/scheduler"
)

// round brings the planner up to date, plans and commits the assignments
// in one raft entry. It returns when the earliest deferred build becomes
// due (zero if none waits), so the leader can wake for it.
func (lp *Planner) round(ctx context.Context) time.Time {
	lp.mu.Lock()
	start := time.Now()
	lp.sync()
	if lp.p == nil {
		lp.mu.Unlock()
		return time.Time{}
	}
	now := time.Now()
	plan := lp.p.Plan(now)
	wake := lp.nextWake(now)
	took := time.Since(start)
	lp.rounds++
	lp.busy += took
	lp.mu.Unlock()
	lp.l.log.Debug("planned", keyCount, len(plan.Assignments), keyElapsed, took)
	if len(plan.Assignments) == 0 {
		return wake
	}
	cmd := &consensus.AssignBuilds{Assignments: make([]consensus.Assignment, 0, len(plan.Assignments))}
	for _, a := range plan.Assignments {
		cmd.Assignments = append(cmd.Assignments, consensus.Assignment{BuildID: a.Build, Node: a.Node})
	}
	start = time.Now()
	if _, err := lp.l.apply.ApplyAndCatchUp(ctx, cmd); err != nil {
		lp.l.log.Warn("commit assignments", keyErr, err)
		return wake
	}
	// The assigned nodes apply the assignments when they learn the commit:
	// tell them now.
	lp.l.raft.Nudge()
	lp.l.cfg.Assigned.Add(float64(len(cmd.Assignments)))
	lp.l.log.Debug("assigned builds", keyCount, len(cmd.Assignments), keyElapsed, time.Since(start))
	return wake
}

// sync applies the changes the feed holds, then the nodes' capacity.
// lp.mu is held.
func (lp *Planner) sync() {
	c := lp.feed.Take()
	if lp.p == nil || c.Reset || (c.Settings && lp.strategy() != lp.p.Config().Strategy) {
		lp.rebuild()
		return
	}
	if c.Nodes {
		lp.recs = nil
	}
	dirty := map[string]bool{} // drvs whose availability or outputs changed
	upsert := map[string]*consensus.Build{}
	for _, id := range c.Builds {
		b, err := lp.st.GetBuild(id)
		if err != nil {
			continue
		}
		lp.track(b, dirty)
		if schedulable(b) {
			upsert[id] = b
		} else if lp.planned[id] != nil {
			lp.remove(id)
		}
	}
	for _, hp := range c.Nars {
		lp.narChanged(hp, dirty)
	}
	miss := map[string]bool{}
	for _, b := range upsert {
		lp.upsert(lp.makeBuild(b, miss))
	}
	for drv := range dirty {
		for id := range lp.dependents[drv] {
			if upsert[id] != nil {
				continue
			}
			if old := lp.planned[id]; old != nil {
				sb := baseOf(old)
				lp.fill(sb, miss)
				lp.upsert(sb)
			}
		}
	}
	lp.syncNodes(false)
}

func schedulable(b *consensus.Build) bool {
	return b.State == consensus.StateQueued && len(b.WaitingFor) == 0
}

func busyState(s string) bool {
	return s == consensus.StateScheduled || s == consensus.StateBuilding
}

func unfinished(s string) bool {
	return s == consensus.StateQueued || busyState(s)
}

// strategy is the mesh's scheduling strategy (derivation-ordered unless
// the settings name another).
func (lp *Planner) strategy() scheduler.Strategy {
	settings, _ := lp.st.Settings()
	if s, err := scheduler.ParseStrategy(settings.Strategy); err == nil {
		return s
	}
	return scheduler.StrategyDerivationOrdered
}

// rebuild reads the whole state into a new Planner. lp.mu is held.
func (lp *Planner) rebuild() {
	start := time.Now()
	cfg := scheduler.DefaultConfig()
	cfg.Strategy = lp.strategy()
	p, err := scheduler.NewPlanner(cfg)
	if err != nil {
		lp.l.log.Error("new planner", keyErr, err)
		return
	}
	lp.p = p
	lp.live, lp.pending, lp.used = map[string]liveBuild{}, map[string]int{}, map[string]int{}
	lp.planned, lp.dependents = map[string]*scheduler.Build{}, map[string]map[string]struct{}{}
	lp.outputOf, lp.drvs, lp.nars = map[string][]string{}, map[string]*drvInfo{}, map[string]narState{}
	lp.defers = lp.defers[:0]
	lp.recs, lp.told, lp.holders = nil, map[string]*scheduler.Node{}, map[string][]string{}
	lp.waitingChanged = true

	var queued []*consensus.Build
	_ = lp.st.QueuedBuilds(func(b *consensus.Build) bool {
		queued = append(queued, b)
		return true
	})
	for _, s := range []string{consensus.StateScheduled, consensus.StateBuilding} {
		bs, _ := lp.st.ListBuilds(consensus.BuildFilter{State: s})
		for _, b := range bs {
			lp.track(b, nil)
		}
	}
	for _, b := range queued {
		lp.track(b, nil)
	}
	miss := map[string]bool{}
	var builds []*scheduler.Build
	for _, b := range queued {
		if !schedulable(b) {
			continue
		}
		sb := lp.makeBuild(b, miss)
		lp.index(sb, true)
		builds = append(builds, sb)
	}
	nodes := lp.syncNodes(true)
	if err := lp.p.Reset(&scheduler.SliceState{BuildList: builds, NodeList: nodes}); err != nil {
		lp.l.log.Debug("reset planner", keyErr, err)
	}
	lp.l.log.Info("planner read the state", keyCount, len(builds), "nodes", len(nodes), keyElapsed, time.Since(start))
}

// track follows a build's unfinished state, the per-drv pending counts
// and the per-node used slots; a drv whose pending status flips goes to
// dirty (when not nil).
func (lp *Planner) track(b *consensus.Build, dirty map[string]bool) {
	prev, had := lp.live[b.ID]
	if had && busyState(prev.state) {
		lp.used[prev.node]--
	}
	now := unfinished(b.State)
	if now {
		lp.live[b.ID] = liveBuild{drv: b.Derivation, state: b.State, node: b.Node}
		if busyState(b.State) {
			lp.used[b.Node]++
		}
		if b.State == consensus.StateQueued && len(b.WaitingFor) > 0 {
			lp.waitingChanged = true
		}
	} else {
		delete(lp.live, b.ID)
		// Builds waiting on this one's outputs may now have to fail.
		lp.waitingChanged = lp.waitingChanged || b.State == consensus.StateFailed || b.State == consensus.StateCanceled
	}
	switch {
	case now && !had:
		if lp.pending[b.Derivation]++; lp.pending[b.Derivation] == 1 && dirty != nil {
			dirty[b.Derivation] = true
		}
	case had && !now:
		if lp.pending[b.Derivation]--; lp.pending[b.Derivation] <= 0 {
			delete(lp.pending, b.Derivation)
			if dirty != nil {
				dirty[b.Derivation] = true
			}
		}
	}
}

// syncNodes makes the planner's nodes the alive, admitted, building
// nodes with their free slots: max jobs less the builds the state gives
// them. With full, it returns them (nars included) for Reset instead of
// telling the planner.
func (lp *Planner) syncNodes(full bool) []*scheduler.Node {
	if lp.recs == nil {
		recs, err := lp.st.Nodes()
		if err != nil {
			return nil
		}
		lp.recs = recs
	}
	members := map[string]gossip.Member{}
	for _, m := range lp.l.members.Members() {
		members[m.Name] = m
	}
	var out []*scheduler.Node
	keep := map[string]bool{}
	for _, rec := range lp.recs {
		m, ok := members[rec.Name]
		if !ok || m.Status != gossip.StatusAlive || m.Meta.Builder == "none" || m.Meta.MaxJobs <= 0 {
			continue
		}
		keep[rec.Name] = true
		used := lp.used[rec.Name]
		want := &scheduler.Node{
			Name: rec.Name, Systems: m.Meta.Systems, Features: m.Meta.Features,
			FreeSlots: max(m.Meta.MaxJobs-used, 0), Load: float64(used) / float64(m.Meta.MaxJobs),
		}
		old := lp.told[rec.Name]
		switch {
		case full || old == nil || !slices.Equal(old.Systems, want.Systems) || !slices.Equal(old.Features, want.Features):
			nd := *want
			nd.Nars, _ = lp.st.NarsHeldBy(rec.Name)
			for _, hp := range nd.Nars {
				if !slices.Contains(lp.holders[hp], rec.Name) {
					lp.holders[hp] = append(lp.holders[hp], rec.Name)
				}
			}
			if full {
				out = append(out, &nd)
			} else if err := lp.p.SetNode(&nd); err != nil {
				lp.l.log.Debug("skip node the scheduler cannot take", keyMember, rec.Name, keyErr, err)
				continue
			}
		case old.FreeSlots != want.FreeSlots || old.Load != want.Load:
			if err := lp.p.SetCapacity(rec.Name, want.FreeSlots, want.Load); err != nil {
				continue
			}
		}
		lp.told[rec.Name] = want
	}
	for name := range lp.told {
		if !keep[name] {
			if !full {
				_ = lp.p.RemoveNode(name)
			}
			delete(lp.told, name)
		}
	}
	return out
}

// nextWake is the earliest DeferUntil after now among planned builds.
func (lp *Planner) nextWake(now time.Time) time.Time {
	for len(lp.defers) > 0 {
		top := lp.defers[0]
		sb := lp.planned[top.id]
		if sb == nil || !sb.DeferUntil.Equal(top.at) || !top.at.After(now) {
			heap.Pop(&lp.defers)
			continue
		}
		return top.at
	}
	return time.Time{}
}
