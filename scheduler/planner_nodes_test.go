package scheduler_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/drvmesh/drvmesh/scheduler"
	"github.com/drvmesh/drvmesh/scheduler/schedtest"
)

// TestPlanner_NodeEdits edits nodes at random through every node method
// (nars added, removed and replaced, nodes removed, added back and
// resized, the odd full Reset) and requires the Planner's plan to equal
// Schedule's over the same nodes after every few edits. Nar paths come
// and go, so the nar index reuses the ids of paths no node holds any more.
func TestPlanner_NodeEdits(t *testing.T) {
	for seed := range uint64(12) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 11))
			farm := schedtest.Generate(schedtest.GenConfig{Builds: 300, Nodes: 12, Seed: seed, Busy: 0.3})
			cfg := scheduler.Config{Strategy: scheduler.StrategyBasic}
			state := &scheduler.SliceState{BuildList: farm.State.BuildList}
			for _, n := range farm.State.NodeList {
				c := *n
				state.NodeList = append(state.NodeList, &c)
			}
			p, err := scheduler.NewPlanner(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Reset(state); err != nil {
				t.Fatal(err)
			}
			var pool []string // input nar paths of queued builds
			for _, b := range state.BuildList {
				for _, nar := range b.InputNars {
					pool = append(pool, nar.Path)
				}
			}
			removed := map[string]*scheduler.Node{}
			edit := func(i int, f func(n *scheduler.Node)) *scheduler.Node {
				c := *state.NodeList[i]
				c.Nars = slices.Clone(c.Nars)
				f(&c)
				state.NodeList[i] = &c
				return &c
			}
			assigned := 0
			for step := range 400 {
				i := rng.IntN(len(state.NodeList))
				name := state.NodeList[i].Name
				path := pool[rng.IntN(len(pool))]
				switch op := rng.IntN(10); {
				case op < 3:
					edit(i, func(n *scheduler.Node) {
						if !slices.Contains(n.Nars, path) {
							n.Nars = append(n.Nars, path)
						}
					})
					err = p.AddNar(name, path)
				case op < 6:
					if len(state.NodeList[i].Nars) > 0 {
						path = state.NodeList[i].Nars[rng.IntN(len(state.NodeList[i].Nars))]
					}
					edit(i, func(n *scheduler.Node) {
						n.Nars = slices.DeleteFunc(n.Nars, func(x string) bool { return x == path })
					})
					err = p.RemoveNar(name, path)
				case op < 7:
					n := edit(i, func(n *scheduler.Node) {
						k := rng.IntN(len(n.Nars) + 1)
						n.Nars = append(n.Nars[:k:k], pool[rng.IntN(len(pool))], pool[rng.IntN(len(pool))])
						n.FreeSlots = rng.IntN(4)
						n.Load = float64(rng.IntN(3)) / 2
					})
					err = p.SetNode(n)
				case op < 8 && len(state.NodeList) > 1:
					removed[name] = state.NodeList[i]
					state.NodeList = slices.Delete(state.NodeList, i, i+1)
					err = p.RemoveNode(name)
				case op < 9 && len(removed) > 0:
					for k, n := range removed {
						delete(removed, k)
						state.NodeList = append(state.NodeList, n)
						err = p.SetNode(n)
						break
					}
				case op < 9:
					n := edit(i, func(n *scheduler.Node) { n.FreeSlots = rng.IntN(5) })
					err = p.SetCapacity(name, n.FreeSlots, n.Load)
				default:
					if rng.IntN(4) == 0 {
						err = p.Reset(state)
					}
				}
				if err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
				if step%4 != 3 {
					continue
				}
				want := scheduler.Schedule(state, cfg, farm.Now)
				if got := p.Plan(farm.Now); !slices.Equal(got.Assignments, want.Assignments) {
					t.Fatalf("step %d: plans differ\nschedule: %v\nplanner:  %v", step, want.Assignments, got.Assignments)
				}
				assigned += len(want.Assignments)
			}
			if assigned == 0 {
				t.Fatal("no build was ever assigned: the test exercised nothing")
			}
		})
	}
}

// TestPlanner_ResetAfterAllNarsGone: a reset while no nar is held, after
// nars were held and dropped, must not leave the nar index handing out
// ids the holders list does not have (it panicked in AddNar).
func TestPlanner_ResetAfterAllNarsGone(t *testing.T) {
	p, err := scheduler.NewPlanner(scheduler.Config{Strategy: scheduler.StrategyBasic})
	if err != nil {
		t.Fatal(err)
	}
	paths := []string{"/nix/store/aaaa-a", "/nix/store/bbbb-b", "/nix/store/cccc-c"}
	node := &scheduler.Node{Name: "n1", Systems: []string{"x86_64-linux"}, FreeSlots: 1, Nars: paths}
	if err := p.Reset(&scheduler.SliceState{NodeList: []*scheduler.Node{node}}); err != nil {
		t.Fatal(err)
	}
	for _, path := range paths {
		if err := p.RemoveNar("n1", path); err != nil {
			t.Fatal(err)
		}
	}
	bare := &scheduler.Node{Name: "n1", Systems: []string{"x86_64-linux"}, FreeSlots: 1}
	if err := p.Reset(&scheduler.SliceState{NodeList: []*scheduler.Node{bare}}); err != nil {
		t.Fatal(err)
	}
	for _, path := range paths {
		if err := p.AddNar("n1", path); err != nil {
			t.Fatal(err)
		}
	}
}
