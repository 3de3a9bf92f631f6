package schedtest

import (
	"fmt"
	"slices"
	"time"

	"github.com/drvmesh/drvmesh/scheduler"
)

// Harness plays the leader around a scheduler: it plans with the reference
// Schedule (and, when Planner is set, with the Planner too), records every
// plan, and applies plans and build completions to its State the way the
// replicated state would change, copying rather than mutating the builds
// and nodes it was given.
type Harness struct {
	State   *scheduler.SliceState
	Config  scheduler.Config
	Planner *scheduler.Planner // optional; kept in step with State

	// Plans records what Schedule returned, PlannerPlans what the Planner
	// returned, one per Plan call.
	Plans        []scheduler.Plan
	PlannerPlans []scheduler.Plan
	// Running holds the applied assignments not yet finished or failed.
	Running map[string]Running
}

// Running is a build that was applied to a node.
type Running struct {
	Build *scheduler.Build
	Node  string
}

// NewHarness returns a harness over a copy of state's lists. With
// incremental, it also builds a Planner from the same state.
func NewHarness(state *scheduler.SliceState, cfg scheduler.Config, incremental bool) (*Harness, error) {
	h := &Harness{
		State: &scheduler.SliceState{
			BuildList: slices.Clone(state.BuildList),
			NodeList:  slices.Clone(state.NodeList),
		},
		Config:  cfg,
		Running: map[string]Running{},
	}
	if incremental {
		p, err := scheduler.NewPlanner(cfg)
		if err != nil {
			return nil, err
		}
		if err := p.Reset(h.State); err != nil {
			return nil, err
		}
		h.Planner = p
	}
	return h, nil
}

// Plan runs Schedule (and the Planner) at now and records the plans. It
// returns Schedule's plan and the Planner's (empty without a Planner).
func (h *Harness) Plan(now time.Time) (ref, inc scheduler.Plan) {
	ref = scheduler.Schedule(h.State, h.Config, now)
	h.Plans = append(h.Plans, ref)
	if h.Planner != nil {
		inc = h.Planner.Plan(now)
		h.PlannerPlans = append(h.PlannerPlans, inc)
	}
	return ref, inc
}

// Apply commits a plan: each assigned build leaves the queue and takes one
// free slot of its node.
func (h *Harness) Apply(plan scheduler.Plan) error {
	for _, a := range plan.Assignments {
		bi := slices.IndexFunc(h.State.BuildList, func(b *scheduler.Build) bool { return b.ID == a.Build })
		if bi < 0 {
			return fmt.Errorf("apply: build %s not queued", a.Build)
		}
		h.Running[a.Build] = Running{Build: h.State.BuildList[bi], Node: a.Node}
		h.State.BuildList = slices.Delete(h.State.BuildList, bi, bi+1)
		n, err := h.setSlots(a.Node, -1)
		if err != nil {
			return err
		}
		if h.Planner != nil {
			if err := h.Planner.Remove(a.Build); err != nil {
				return err
			}
			if err := h.Planner.SetCapacity(n.Name, n.FreeSlots, n.Load); err != nil {
				return err
			}
		}
	}
	return nil
}

// Finish records that running build id succeeded with output path out:
// its node gets the slot back and holds the output nar, and every queued
// build with its derivation as an input sees it available.
func (h *Harness) Finish(id, out string) error {
	r, ok := h.Running[id]
	if !ok {
		return fmt.Errorf("finish: build %s not running", id)
	}
	delete(h.Running, id)
	drv := r.Build.Drv
	n, err := h.setSlots(r.Node, +1)
	if err != nil {
		return err
	}
	nn := *n
	nn.Nars = append(slices.Clone(n.Nars), out)
	h.replaceNode(&nn)
	for i, b := range h.State.BuildList {
		k := slices.IndexFunc(b.Inputs, func(in scheduler.Input) bool { return in.Drv == drv })
		if k < 0 {
			continue
		}
		nb := *b
		nb.Inputs = slices.Clone(b.Inputs)
		for j := range nb.Inputs {
			if nb.Inputs[j].Drv == drv {
				nb.Inputs[j].Available = true
			}
		}
		h.State.BuildList[i] = &nb
	}
	if h.Planner != nil {
		if err := h.Planner.SetNode(&nn); err != nil {
			return err
		}
		h.Planner.MarkAvailable(drv)
	}
	return nil
}

// Fail records that running build id failed and is queued again for a
// retry: its node gets the slot back and the build remembers the node.
func (h *Harness) Fail(id string) error {
	r, ok := h.Running[id]
	if !ok {
		return fmt.Errorf("fail: build %s not running", id)
	}
	delete(h.Running, id)
	b, node := r.Build, r.Node
	n, err := h.setSlots(node, +1)
	if err != nil {
		return err
	}
	nb := *b
	nb.FailedOn = append(slices.Clone(b.FailedOn), node)
	h.State.BuildList = append(h.State.BuildList, &nb)
	if h.Planner != nil {
		if err := h.Planner.SetCapacity(n.Name, n.FreeSlots, n.Load); err != nil {
			return err
		}
		return h.Planner.Upsert(&nb)
	}
	return nil
}

// setSlots adds delta to a node's free slots, replacing the node by a copy.
func (h *Harness) setSlots(name string, delta int) (*scheduler.Node, error) {
	i := slices.IndexFunc(h.State.NodeList, func(n *scheduler.Node) bool { return n.Name == name })
	if i < 0 {
		return nil, fmt.Errorf("node %s unknown", name)
	}
	n := *h.State.NodeList[i]
	n.FreeSlots += delta
	if n.FreeSlots < 0 {
		return nil, fmt.Errorf("node %s: no free slot", name)
	}
	h.State.NodeList[i] = &n
	return &n, nil
}

func (h *Harness) replaceNode(n *scheduler.Node) {
	i := slices.IndexFunc(h.State.NodeList, func(x *scheduler.Node) bool { return x.Name == n.Name })
	h.State.NodeList[i] = n
}
