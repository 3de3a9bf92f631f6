package schedtest

import (
	"slices"
	"testing"
	"time"

	"github.com/drvmesh/drvmesh/scheduler"
)

func TestHarness_Plan(t *testing.T) {
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	dep := &scheduler.Build{ID: "dep", Drv: "/nix/store/dep.drv", System: "x86_64-linux", Submitted: now}
	top := &scheduler.Build{ID: "top", Drv: "/nix/store/top.drv", System: "x86_64-linux", Submitted: now.Add(-time.Hour),
		Inputs:    []scheduler.Input{{Drv: dep.Drv}},
		InputNars: []scheduler.Nar{{Path: OutPath(dep.Drv), Size: 100}}}
	state := &scheduler.SliceState{
		BuildList: []*scheduler.Build{dep, top},
		NodeList: []*scheduler.Node{
			{Name: "a", Systems: []string{"x86_64-linux"}, FreeSlots: 1},
			{Name: "b", Systems: []string{"x86_64-linux"}, FreeSlots: 1, Load: 0.5},
		},
	}
	h, err := NewHarness(state, scheduler.DefaultConfig(), true)
	if err != nil {
		t.Fatal(err)
	}

	ref, inc := h.Plan(now)
	want := []scheduler.Assignment{{Build: "dep", Node: "a"}}
	if !slices.Equal(ref.Assignments, want) || !slices.Equal(inc.Assignments, want) {
		t.Fatalf("first round: %v / %v, want %v", ref, inc, want)
	}
	if err := h.Apply(ref); err != nil {
		t.Fatal(err)
	}
	if len(h.State.BuildList) != 1 || h.State.NodeList[0].FreeSlots != 0 {
		t.Fatalf("apply: queue %d builds, node a %d slots", len(h.State.BuildList), h.State.NodeList[0].FreeSlots)
	}
	if state.NodeList[0].FreeSlots != 1 || len(state.BuildList) != 2 {
		t.Fatalf("the harness modified the state it was given")
	}
	if ref, _ := h.Plan(now); len(ref.Assignments) != 0 {
		t.Fatalf("top planned before its input was built: %v", ref)
	}

	// dep succeeds on a: a frees its slot and holds dep's output, so top
	// goes to a (locality beats b's free slot).
	if err := h.Finish("dep", OutPath(dep.Drv)); err != nil {
		t.Fatal(err)
	}
	ref, inc = h.Plan(now)
	want = []scheduler.Assignment{{Build: "top", Node: "a"}}
	if !slices.Equal(ref.Assignments, want) || !slices.Equal(inc.Assignments, want) {
		t.Fatalf("after finish: %v / %v, want %v", ref, inc, want)
	}
	if err := h.Apply(ref); err != nil {
		t.Fatal(err)
	}
	// top fails on a and is retried: it must go to b despite locality.
	if err := h.Fail("top"); err != nil {
		t.Fatal(err)
	}
	ref, inc = h.Plan(now)
	want = []scheduler.Assignment{{Build: "top", Node: "b"}}
	if !slices.Equal(ref.Assignments, want) || !slices.Equal(inc.Assignments, want) {
		t.Fatalf("retry: %v / %v, want %v", ref, inc, want)
	}
	if len(h.Plans) != 4 || len(h.PlannerPlans) != 4 {
		t.Fatalf("recorded %d and %d plans, want 4", len(h.Plans), len(h.PlannerPlans))
	}
}

func TestGenerate(t *testing.T) {
	f := Generate(GenConfig{Builds: 2000, Nodes: 50, Seed: 3})
	if len(f.State.BuildList) != 2000 || len(f.State.NodeList) != 50 {
		t.Fatalf("got %d builds, %d nodes", len(f.State.BuildList), len(f.State.NodeList))
	}
	again := Generate(GenConfig{Builds: 2000, Nodes: 50, Seed: 3})
	for i, b := range f.State.BuildList {
		if b.Drv != again.State.BuildList[i].Drv || len(b.Inputs) != len(again.State.BuildList[i].Inputs) {
			t.Fatalf("build %d differs between runs with the same seed", i)
		}
	}
	systems := map[string]int{}
	fanIn := map[string]int{}
	for _, b := range f.State.BuildList {
		systems[b.System]++
		if len(b.Inputs) < 1 && b.ID != "b000000" || len(b.Inputs) > 20 {
			t.Fatalf("build %s has %d inputs", b.ID, len(b.Inputs))
		}
		for _, in := range b.Inputs {
			fanIn[in.Drv]++
		}
	}
	if len(systems) != 7 || systems["x86_64-linux"] < 1000 {
		t.Fatalf("systems %v: want 7 with x86_64-linux dominant", systems)
	}
	top := slices.Max(slices.Collect(func(yield func(int) bool) {
		for _, n := range fanIn {
			if !yield(n) {
				return
			}
		}
	}))
	if top < 200 {
		t.Fatalf("largest fan-in %d: want a power-law head", top)
	}
}
