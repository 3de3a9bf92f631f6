package scheduler_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/drvmesh/drvmesh/scheduler"
)

func newTestPlanner(t *testing.T, cfg scheduler.Config, nodes ...*scheduler.Node) *scheduler.Planner {
	t.Helper()
	p, err := scheduler.NewPlanner(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if err := p.SetNode(n); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func assertPlan(t *testing.T, p *scheduler.Planner, now time.Time, want []scheduler.Assignment) {
	t.Helper()
	if got := p.Plan(now).Assignments; !slices.Equal(got, want) {
		t.Fatalf("plan %v, want %v", got, want)
	}
}

func TestNewPlanner(t *testing.T) {
	t.Run("bad config", func(t *testing.T) {
		if _, err := scheduler.NewPlanner(scheduler.Config{Strategy: "x"}); !errors.Is(err, scheduler.ErrBadConfig) {
			t.Fatalf("err %v, want ErrBadConfig", err)
		}
	})
	t.Run("strategy names", func(t *testing.T) {
		for _, s := range []string{"basic", "derivation-ordered"} {
			if got, err := scheduler.ParseStrategy(s); err != nil || string(got) != s {
				t.Fatalf("ParseStrategy(%q) = %q, %v", s, got, err)
			}
		}
	})
}

func TestPlanner_Upsert(t *testing.T) {
	t.Run("replaces the build with the same id", func(t *testing.T) {
		p := newTestPlanner(t, scheduler.DefaultConfig(), node("n1", 1, 0))
		for _, b := range []*scheduler.Build{build("a", 0, 0), build("b", 1, 0)} {
			if err := p.Upsert(b); err != nil {
				t.Fatal(err)
			}
		}
		assertPlan(t, p, t0, as("b", "n1"))
		if err := p.Upsert(build("a", 5, 0)); err != nil {
			t.Fatal(err)
		}
		assertPlan(t, p, t0, as("a", "n1"))
		if s := p.Stats(); s.Queued != 2 || s.Ready != 2 {
			t.Fatalf("stats %+v, want 2 queued and ready", s)
		}
	})
	t.Run("rejects a build without id", func(t *testing.T) {
		p := newTestPlanner(t, scheduler.DefaultConfig())
		if err := p.Upsert(&scheduler.Build{System: "x"}); !errors.Is(err, scheduler.ErrBadBuild) {
			t.Fatalf("err %v, want ErrBadBuild", err)
		}
	})
}

func TestPlanner_Remove(t *testing.T) {
	p := newTestPlanner(t, scheduler.DefaultConfig(), node("n1", 1, 0))
	_ = p.Upsert(build("a", 1, 0))
	_ = p.Upsert(build("b", 0, 0))
	if err := p.Remove("a"); err != nil {
		t.Fatal(err)
	}
	assertPlan(t, p, t0, as("b", "n1"))
	if p.Has("a") || !p.Has("b") {
		t.Fatalf("Has: a %v b %v", p.Has("a"), p.Has("b"))
	}
	if err := p.Remove("a"); !errors.Is(err, scheduler.ErrUnknownBuild) {
		t.Fatalf("err %v, want ErrUnknownBuild", err)
	}
}

func TestPlanner_MarkAvailable(t *testing.T) {
	p := newTestPlanner(t, scheduler.DefaultConfig(), node("n1", 4, 0))
	dep := func(drvs ...string) func(*scheduler.Build) {
		return func(b *scheduler.Build) {
			for _, d := range drvs {
				b.Inputs = append(b.Inputs, scheduler.Input{Drv: d})
			}
		}
	}
	_ = p.Upsert(with(build("one", 0, 2*time.Minute), dep("x")))
	_ = p.Upsert(with(build("two", 0, time.Minute), dep("x", "y")))
	assertPlan(t, p, t0, nil)
	if n := p.MarkAvailable("x"); n != 1 {
		t.Fatalf("released %d, want 1", n)
	}
	assertPlan(t, p, t0, as("one", "n1"))
	if n := p.MarkAvailable("x"); n != 0 {
		t.Fatalf("released %d again", n)
	}
	if n := p.MarkAvailable("y"); n != 1 {
		t.Fatalf("released %d, want 1", n)
	}
	assertPlan(t, p, t0, as("one", "n1", "two", "n1"))
	// A removed build's stale waiter must not release its replacement.
	_ = p.Upsert(with(build("three", 0, 0), dep("z")))
	_ = p.Remove("three")
	_ = p.Upsert(with(build("three", 0, 0), dep("z", "w")))
	if n := p.MarkAvailable("z"); n != 0 {
		t.Fatalf("released %d, want 0", n)
	}
}

func TestPlanner_Plan(t *testing.T) {
	t.Run("deferred build released when due", func(t *testing.T) {
		p := newTestPlanner(t, scheduler.DefaultConfig(), node("n1", 4, 0))
		_ = p.Upsert(with(build("d", 0, 0), func(b *scheduler.Build) { b.DeferUntil = t0.Add(time.Hour) }))
		assertPlan(t, p, t0, nil)
		if s := p.Stats(); s.Deferred != 1 {
			t.Fatalf("stats %+v, want 1 deferred", s)
		}
		assertPlan(t, p, t0.Add(time.Hour), as("d", "n1"))
	})
	t.Run("repeatable until the outcome is reported", func(t *testing.T) {
		p := newTestPlanner(t, scheduler.DefaultConfig(), node("n1", 1, 0), node("n2", 1, 0.5))
		_ = p.Upsert(build("a", 2, 0))
		_ = p.Upsert(build("b", 1, 0))
		_ = p.Upsert(build("c", 0, 0))
		want := as("a", "n1", "b", "n2")
		assertPlan(t, p, t0, want)
		assertPlan(t, p, t0, want)
		_ = p.Remove("a")
		_ = p.SetCapacity("n1", 0, 1)
		assertPlan(t, p, t0, as("b", "n2"))
	})
}

func TestPlanner_SetNode(t *testing.T) {
	nar := func(b *scheduler.Build) { b.InputNars = []scheduler.Nar{{Path: "/nix/store/a", Size: 10}} }
	p := newTestPlanner(t, scheduler.DefaultConfig(), node("n1", 1, 0), node("n2", 1, 0.5))
	_ = p.Upsert(with(build("x", 0, 0), nar))
	assertPlan(t, p, t0, as("x", "n1"))
	if err := p.SetNode(node("n2", 1, 0.5, "/nix/store/a")); err != nil {
		t.Fatal(err)
	}
	assertPlan(t, p, t0, as("x", "n2"))
	if err := p.RemoveNar("n2", "/nix/store/a"); err != nil {
		t.Fatal(err)
	}
	assertPlan(t, p, t0, as("x", "n1"))
	if err := p.AddNar("n2", "/nix/store/a"); err != nil {
		t.Fatal(err)
	}
	assertPlan(t, p, t0, as("x", "n2"))
	if err := p.SetCapacity("n2", 0, 0.5); err != nil {
		t.Fatal(err)
	}
	assertPlan(t, p, t0, as("x", "n1"))
	if err := p.RemoveNode("n1"); err != nil {
		t.Fatal(err)
	}
	assertPlan(t, p, t0, nil)
	if err := p.SetNode(node("n3", 2, 0)); err != nil {
		t.Fatal(err)
	}
	assertPlan(t, p, t0, as("x", "n3"))
	for name, err := range map[string]error{
		"remove":   p.RemoveNode("n1"),
		"capacity": p.SetCapacity("nope", 1, 0),
		"add nar":  p.AddNar("nope", "x"),
		"rm nar":   p.RemoveNar("nope", "x"),
	} {
		if !errors.Is(err, scheduler.ErrUnknownNode) {
			t.Fatalf("%s: err %v, want ErrUnknownNode", name, err)
		}
	}
	if err := p.SetNode(&scheduler.Node{}); !errors.Is(err, scheduler.ErrBadNode) {
		t.Fatalf("err %v, want ErrBadNode", err)
	}
	if s := p.Stats(); s.Nodes != 2 || s.FreeSlots != 2 {
		t.Fatalf("stats %+v, want 2 nodes with 2 free slots", s)
	}
}
