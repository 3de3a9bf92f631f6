package node

import (
	"time"

	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/gossip"
	"github.com/drvmesh/drvmesh/scheduler"
)

// referenceState reads the whole queued state the plain way: every
// queued build, its derivation and inputs, every node's holdings. The
// leader's Planner must plan as scheduler.Schedule does over it.
func referenceState(n *Node, now time.Time) (*scheduler.SliceState, scheduler.Config) {
	st := n.raft.State()
	cfg := scheduler.DefaultConfig()
	if settings, err := st.Settings(); err == nil {
		if s, err := scheduler.ParseStrategy(settings.Strategy); err == nil {
			cfg.Strategy = s
		}
	}
	nodes, busy := schedNodes(n, st)
	drvs := map[string]*consensus.Drv{}
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
	var queued []*consensus.Build
	_ = st.QueuedBuilds(func(b *consensus.Build) bool {
		if len(b.WaitingFor) == 0 {
			queued = append(queued, b)
		}
		return true
	})
	var builds []*scheduler.Build
	for _, b := range queued {
		sb := &scheduler.Build{
			ID: b.ID, Drv: b.Derivation, Priority: b.Priority, System: b.System,
			Tags: b.Tags, Submitted: b.CreatedAt, DeferUntil: b.DeferUntil, FailedOn: b.FailedNodes,
		}
		if d := drvOf(b.Derivation); d != nil {
			sb.Features = d.Features
			for in, outNames := range d.InputDrvs {
				if id := drvOf(in); id != nil {
					for _, name := range outNames {
						p := id.Outputs[name]
						if p == "" {
							continue
						}
						if m, _ := st.MissingPaths([]string{p}); len(m) == 0 {
							hp, _ := consensus.HashPart(p)
							ni, _ := st.NarInfoByHash(hp)
							sb.InputNars = append(sb.InputNars, scheduler.Nar{Path: hp, Size: ni.NarSize})
						}
					}
				}
				sb.Inputs = append(sb.Inputs, scheduler.Input{Drv: in, Available: !pending[in]})
			}
		}
		builds = append(builds, sb)
	}
	return &scheduler.SliceState{BuildList: builds, NodeList: nodes}, cfg
}

// schedNodes lists the alive, admitted, building nodes with their free
// slots: max jobs less the builds the state already gives them. busy holds
// the ids of the builds scheduled or running anywhere.
func schedNodes(n *Node, st *consensus.FSM) ([]*scheduler.Node, map[string]bool) {
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
		paths, _ := st.NarsHeldBy(rec.Name)
		out = append(out, &scheduler.Node{
			Name: rec.Name, Systems: m.Meta.Systems, Features: m.Meta.Features,
			FreeSlots: max(m.Meta.MaxJobs-used[rec.Name], 0), Load: float64(used[rec.Name]) / float64(m.Meta.MaxJobs),
			Nars: paths,
		})
	}
	return out, busy
}

// planCheck brings the leader's planner up to date and returns its plan
// and scheduler.Schedule's over referenceState, both at the same instant,
// with extra free slots added on every node (extra slots expose the order
// and placement of every ready build, not only the first few). ok is
// false when this node does not lead or the state moved during the read;
// the caller asks again.
func planCheck(n *Node, extra int) (got, want scheduler.Plan, ok bool) {
	lp := n.leader.Planner()
	if lp == nil {
		return got, want, false
	}
	return lp.Compare(extra, func(now time.Time) (*scheduler.SliceState, scheduler.Config) {
		return referenceState(n, now)
	})
}
