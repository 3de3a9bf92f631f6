package node

import (
	"context"
	"time"

	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/gossip"
	"github.com/drvmesh/drvmesh/scheduler"
)

// schedule runs one planning round on the leader and commits its
// assignments in one raft entry. The round reads the queued builds and
// the nodes' free slots from the replicated state and gossip. It returns
// when the earliest deferred build becomes due (zero if none waits), so
// the leader can wake for it without polling.
func (n *Node) schedule(ctx context.Context) (wake time.Time) {
	st := n.raft.State()
	settings, err := st.Settings()
	if err != nil {
		return wake
	}
	strategy, err := scheduler.ParseStrategy(settings.Strategy)
	if err != nil {
		strategy = scheduler.StrategyDerivationOrdered
	}
	cfg := scheduler.DefaultConfig()
	cfg.Strategy = strategy

	nodes, busy := n.schedNodes(st)
	if len(nodes) == 0 {
		return wake
	}
	free := 0
	for _, nd := range nodes {
		free += nd.FreeSlots
	}
	if free == 0 {
		return wake
	}
	now := time.Now()
	var builds []*scheduler.Build
	drvs := map[string]*consensus.Drv{}
	avail := map[string]bool{}
	sizes := map[string]int64{}
	drvOf := func(p string) *consensus.Drv {
		if d, ok := drvs[p]; ok {
			return d
		}
		d, _ := st.Drv(p)
		drvs[p] = d
		return d
	}
	pending := map[string]bool{} // drvs with an unfinished build
	_ = st.QueuedBuilds(func(b *consensus.Build) bool {
		pending[b.Derivation] = true
		return true
	})
	for id := range busy {
		if b, err := st.GetBuild(id); err == nil {
			pending[b.Derivation] = true
		}
	}
	_ = st.QueuedBuilds(func(b *consensus.Build) bool {
		if len(b.WaitingFor) > 0 {
			return true
		}
		if b.DeferUntil.After(now) && (wake.IsZero() || b.DeferUntil.Before(wake)) {
			wake = b.DeferUntil
		}
		sb := &scheduler.Build{
			ID: b.ID, Drv: b.Derivation, Priority: b.Priority, System: b.System,
			Tags: b.Tags, Submitted: b.CreatedAt, DeferUntil: b.DeferUntil, FailedOn: b.FailedNodes,
		}
		if d := drvOf(b.Derivation); d != nil {
			sb.Features = d.Features
			for in, outNames := range d.InputDrvs {
				id := drvOf(in)
				ok := !pending[in]
				if id != nil {
					for _, name := range outNames {
						p := id.Outputs[name]
						if p == "" {
							continue
						}
						if _, seen := avail[p]; !seen {
							m, _ := st.MissingPaths([]string{p})
							avail[p] = len(m) == 0
							if avail[p] {
								sizes[p] = narSize(st, p)
							}
						}
						if avail[p] {
							// Nars are named by hash part on both sides.
							hp, _ := consensus.HashPart(p)
							sb.InputNars = append(sb.InputNars, scheduler.Nar{Path: hp, Size: sizes[p]})
						} else if pending[in] {
							ok = false
						}
					}
				}
				sb.Inputs = append(sb.Inputs, scheduler.Input{Drv: in, Available: ok})
			}
		}
		builds = append(builds, sb)
		return true
	})
	if len(builds) == 0 {
		return wake
	}
	plan := scheduler.Schedule(&scheduler.SliceState{BuildList: builds, NodeList: nodes}, cfg, now)
	if len(plan.Assignments) == 0 {
		return wake
	}
	cmd := &consensus.AssignBuilds{}
	for _, a := range plan.Assignments {
		cmd.Assignments = append(cmd.Assignments, consensus.Assignment{BuildID: a.Build, Node: a.Node})
	}
	start := time.Now()
	if _, err := n.apply(ctx, cmd); err != nil {
		n.log.Warn("commit assignments", keyErr, err)
		return wake
	}
	n.metrics.assigned.Add(float64(len(cmd.Assignments)))
	n.log.Debug("assigned builds", keyCount, len(cmd.Assignments), keyElapsed, time.Since(start))
	return wake
}

func narSize(st *consensus.FSM, path string) int64 {
	hp, err := consensus.HashPart(path)
	if err != nil {
		return 0
	}
	ni, err := st.NarInfoByHash(hp)
	if err != nil || ni == nil {
		return 0
	}
	return ni.NarSize
}

// schedNodes lists the alive, admitted, building nodes with their free
// slots: max jobs less the builds the state already gives them. busy holds
// the ids of the builds scheduled or running anywhere.
func (n *Node) schedNodes(st *consensus.FSM) ([]*scheduler.Node, map[string]bool) {
	recs, err := st.Nodes()
	if err != nil {
		return nil, nil
	}
	used := map[string]int{}
	busy := map[string]bool{}
	for _, s := range []string{consensus.StateScheduled, consensus.StateBuilding} {
		bs, _ := st.ListBuilds(consensus.BuildFilter{State: s})
		for _, b := range bs {
			used[b.Node]++
			busy[b.ID] = true
		}
	}
	var out []*scheduler.Node
	for _, rec := range recs {
		m, ok := n.gossip.Member(rec.Name)
		if !ok || m.Status != gossip.StatusAlive || m.Meta.Builder == "none" || m.Meta.MaxJobs <= 0 {
			continue
		}
		freeSlots := m.Meta.MaxJobs - used[rec.Name]
		if freeSlots < 0 {
			freeSlots = 0
		}
		paths, _ := st.NarsHeldBy(rec.Name)
		out = append(out, &scheduler.Node{
			Name: rec.Name, Systems: m.Meta.Systems, Features: m.Meta.Features,
			FreeSlots: freeSlots, Load: float64(used[rec.Name]) / float64(m.Meta.MaxJobs), Nars: paths,
		})
	}
	return out, busy
}
