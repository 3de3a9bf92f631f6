package scheduler_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/drvmesh/drvmesh/scheduler"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func node(name string, slots int, load float64, nars ...string) *scheduler.Node {
	return &scheduler.Node{Name: name, Systems: []string{"x86_64-linux"}, FreeSlots: slots, Load: load, Nars: nars}
}

func build(id string, prio int, age time.Duration) *scheduler.Build {
	return &scheduler.Build{ID: id, Drv: "/nix/store/" + id + ".drv", Priority: prio, System: "x86_64-linux", Submitted: t0.Add(-age)}
}

func with(b *scheduler.Build, f func(*scheduler.Build)) *scheduler.Build {
	f(b)
	return b
}

func withNode(n *scheduler.Node, f func(*scheduler.Node)) *scheduler.Node {
	f(n)
	return n
}

func as(pairs ...string) []scheduler.Assignment {
	var out []scheduler.Assignment
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, scheduler.Assignment{Build: pairs[i], Node: pairs[i+1]})
	}
	return out
}

// planBoth plans with Schedule and with a Planner built from the same state
// and fails unless they agree. It returns Reset's error, which reports
// invalid builds and nodes.
func planBoth(t *testing.T, state *scheduler.SliceState, cfg scheduler.Config, now time.Time) ([]scheduler.Assignment, error) {
	t.Helper()
	ref := scheduler.Schedule(state, cfg, now)
	p, err := scheduler.NewPlanner(cfg)
	if err != nil {
		t.Fatal(err)
	}
	resetErr := p.Reset(state)
	inc := p.Plan(now)
	if !slices.Equal(ref.Assignments, inc.Assignments) {
		t.Fatalf("Schedule %v, Planner %v", ref.Assignments, inc.Assignments)
	}
	return ref.Assignments, resetErr
}

func TestSchedule_Rules(t *testing.T) {
	ordered := scheduler.Config{Strategy: scheduler.StrategyDerivationOrdered, AgeStep: 10 * time.Minute}
	basic := scheduler.Config{Strategy: scheduler.StrategyBasic, AgeStep: 10 * time.Minute}
	noAging := scheduler.Config{Strategy: scheduler.StrategyBasic}
	missing := func(b *scheduler.Build) { b.Inputs = []scheduler.Input{{Drv: "/nix/store/dep.drv"}} }
	nars := func(ns ...scheduler.Nar) func(*scheduler.Build) {
		return func(b *scheduler.Build) { b.InputNars = ns }
	}
	tests := []struct {
		name   string
		cfg    scheduler.Config
		nodes  []*scheduler.Node
		builds []*scheduler.Build
		want   []scheduler.Assignment
		bad    bool // the state holds invalid builds and nodes
	}{
		{
			name:   "higher priority first",
			cfg:    ordered,
			nodes:  []*scheduler.Node{node("n1", 1, 0)},
			builds: []*scheduler.Build{build("low", 0, time.Minute), build("high", 2, time.Minute)},
			want:   as("high", "n1"),
		},
		{
			name:   "same priority: older first",
			cfg:    ordered,
			nodes:  []*scheduler.Node{node("n1", 1, 0)},
			builds: []*scheduler.Build{build("young", 1, time.Minute), build("old", 1, time.Hour)},
			want:   as("old", "n1"),
		},
		{
			name:   "same priority and age: smaller id first",
			cfg:    ordered,
			nodes:  []*scheduler.Node{node("n1", 1, 0)},
			builds: []*scheduler.Build{build("b", 1, time.Minute), build("a", 1, time.Minute)},
			want:   as("a", "n1"),
		},
		{
			name:   "aging overtakes a higher priority",
			cfg:    ordered,
			nodes:  []*scheduler.Node{node("n1", 1, 0)},
			builds: []*scheduler.Build{build("fresh", 3, 0), build("waiting", 0, 35*time.Minute)},
			want:   as("waiting", "n1"),
		},
		{
			name:   "aging not yet enough",
			cfg:    ordered,
			nodes:  []*scheduler.Node{node("n1", 1, 0)},
			builds: []*scheduler.Build{build("fresh", 3, 0), build("waiting", 0, 25*time.Minute)},
			want:   as("fresh", "n1"),
		},
		{
			name:   "aging disabled: priority wins over any wait",
			cfg:    noAging,
			nodes:  []*scheduler.Node{node("n1", 1, 0)},
			builds: []*scheduler.Build{build("fresh", 1, 0), build("waiting", 0, 1000*time.Hour)},
			want:   as("fresh", "n1"),
		},
		{
			name:   "system mismatch",
			cfg:    ordered,
			nodes:  []*scheduler.Node{node("n1", 4, 0)},
			builds: []*scheduler.Build{with(build("arm", 0, 0), func(b *scheduler.Build) { b.System = "aarch64-linux" })},
			want:   nil,
		},
		{
			name: "system picks the matching node",
			cfg:  ordered,
			nodes: []*scheduler.Node{node("x86", 4, 0), withNode(node("arm", 4, 0.9), func(n *scheduler.Node) {
				n.Systems = []string{"aarch64-linux", "armv7l-linux"}
			})},
			builds: []*scheduler.Build{with(build("b", 0, 0), func(b *scheduler.Build) { b.System = "armv7l-linux" })},
			want:   as("b", "arm"),
		},
		{
			name:   "feature mismatch",
			cfg:    ordered,
			nodes:  []*scheduler.Node{withNode(node("n1", 4, 0), func(n *scheduler.Node) { n.Features = []string{"big-parallel"} })},
			builds: []*scheduler.Build{with(build("test", 0, 0), func(b *scheduler.Build) { b.Features = []string{"kvm", "big-parallel"} })},
			want:   nil,
		},
		{
			name: "features all offered",
			cfg:  ordered,
			nodes: []*scheduler.Node{node("plain", 4, 0), withNode(node("kvm", 4, 0.5), func(n *scheduler.Node) {
				n.Features = []string{"nixos-test", "kvm", "big-parallel"}
			})},
			builds: []*scheduler.Build{with(build("test", 0, 0), func(b *scheduler.Build) { b.Features = []string{"kvm", "big-parallel", "kvm"} })},
			want:   as("test", "kvm"),
		},
		{
			name:   "never more than the free slots",
			cfg:    ordered,
			nodes:  []*scheduler.Node{node("n1", 2, 0), node("n0", 0, 0)},
			builds: []*scheduler.Build{build("a", 0, 3*time.Minute), build("b", 0, 2*time.Minute), build("c", 0, time.Minute)},
			want:   as("a", "n1", "b", "n1"),
		},
		{
			name:  "deferred until after now waits; due ones go",
			cfg:   ordered,
			nodes: []*scheduler.Node{node("n1", 4, 0)},
			builds: []*scheduler.Build{
				with(build("later", 5, time.Hour), func(b *scheduler.Build) { b.DeferUntil = t0.Add(time.Second) }),
				with(build("due", 0, time.Hour), func(b *scheduler.Build) { b.DeferUntil = t0 }),
				with(build("past", 0, time.Minute), func(b *scheduler.Build) { b.DeferUntil = t0.Add(-time.Hour) }),
			},
			want: as("due", "n1", "past", "n1"),
		},
		{
			name:   "derivation-ordered: missing input waits",
			cfg:    ordered,
			nodes:  []*scheduler.Node{node("n1", 4, 0)},
			builds: []*scheduler.Build{with(build("needs", 9, time.Hour), missing), build("free", 0, 0)},
			want:   as("free", "n1"),
		},
		{
			name:  "derivation-ordered: available inputs go",
			cfg:   ordered,
			nodes: []*scheduler.Node{node("n1", 4, 0)},
			builds: []*scheduler.Build{with(build("ok", 0, 0), func(b *scheduler.Build) {
				b.Inputs = []scheduler.Input{{Drv: "/nix/store/x.drv", Available: true}}
			})},
			want: as("ok", "n1"),
		},
		{
			name:   "basic: missing input does not wait",
			cfg:    basic,
			nodes:  []*scheduler.Node{node("n1", 4, 0)},
			builds: []*scheduler.Build{with(build("needs", 9, time.Hour), missing), build("free", 0, 0)},
			want:   as("needs", "n1", "free", "n1"),
		},
		{
			name: "locality: most input bytes wins over load",
			cfg:  ordered,
			nodes: []*scheduler.Node{
				node("small", 4, 0, "/nix/store/a"),
				node("big", 4, 0.9, "/nix/store/b", "/nix/store/c"),
				node("none", 4, 0),
			},
			builds: []*scheduler.Build{with(build("x", 0, 0), nars(
				scheduler.Nar{Path: "/nix/store/a", Size: 500},
				scheduler.Nar{Path: "/nix/store/b", Size: 300},
				scheduler.Nar{Path: "/nix/store/c", Size: 300},
			))},
			want: as("x", "big"),
		},
		{
			name: "locality counts bytes, not nars",
			cfg:  ordered,
			nodes: []*scheduler.Node{
				node("one-big", 4, 0.5, "/nix/store/a"),
				node("two-small", 4, 0, "/nix/store/b", "/nix/store/c"),
			},
			builds: []*scheduler.Build{with(build("x", 0, 0), nars(
				scheduler.Nar{Path: "/nix/store/a", Size: 1000},
				scheduler.Nar{Path: "/nix/store/b", Size: 10},
				scheduler.Nar{Path: "/nix/store/c", Size: 10},
			))},
			want: as("x", "one-big"),
		},
		{
			name: "equal bytes: least load wins",
			cfg:  ordered,
			nodes: []*scheduler.Node{
				node("a", 4, 0.7, "/nix/store/a"),
				node("b", 4, 0.2, "/nix/store/a"),
				node("c", 4, 0.1),
			},
			builds: []*scheduler.Build{with(build("x", 0, 0), nars(scheduler.Nar{Path: "/nix/store/a", Size: 10}))},
			want:   as("x", "b"),
		},
		{
			name:   "equal bytes and load: smallest name wins",
			cfg:    ordered,
			nodes:  []*scheduler.Node{node("n2", 4, 0.5), node("n1", 4, 0.5), node("n3", 4, 0.5)},
			builds: []*scheduler.Build{build("x", 0, 0)},
			want:   as("x", "n1"),
		},
		{
			name: "retry avoids the node it failed on",
			cfg:  ordered,
			nodes: []*scheduler.Node{
				node("failed", 4, 0, "/nix/store/a"),
				node("other", 4, 0.9),
			},
			builds: []*scheduler.Build{with(build("x", 0, 0), func(b *scheduler.Build) {
				b.InputNars = []scheduler.Nar{{Path: "/nix/store/a", Size: 1 << 30}}
				b.FailedOn = []string{"failed"}
			})},
			want: as("x", "other"),
		},
		{
			name: "retry goes back when no other node has a slot",
			cfg:  ordered,
			nodes: []*scheduler.Node{
				node("failed", 4, 0),
				node("full", 0, 0),
			},
			builds: []*scheduler.Build{with(build("x", 0, 0), func(b *scheduler.Build) { b.FailedOn = []string{"failed"} })},
			want:   as("x", "failed"),
		},
		{
			name: "retry: among failed nodes locality still ranks",
			cfg:  ordered,
			nodes: []*scheduler.Node{
				node("f1", 4, 0),
				node("f2", 4, 0.5, "/nix/store/a"),
			},
			builds: []*scheduler.Build{with(build("x", 0, 0), func(b *scheduler.Build) {
				b.InputNars = []scheduler.Nar{{Path: "/nix/store/a", Size: 5}}
				b.FailedOn = []string{"f1", "f2"}
			})},
			want: as("x", "f2"),
		},
		{
			name: "a full node is skipped for the next best",
			cfg:  ordered,
			nodes: []*scheduler.Node{
				node("holder", 1, 0, "/nix/store/a"),
				node("spare", 4, 0.3),
			},
			builds: []*scheduler.Build{
				with(build("first", 1, 0), nars(scheduler.Nar{Path: "/nix/store/a", Size: 5})),
				with(build("second", 0, 0), nars(scheduler.Nar{Path: "/nix/store/a", Size: 5})),
			},
			want: as("first", "holder", "second", "spare"),
		},
		{
			name:  "invalid builds are skipped",
			cfg:   ordered,
			nodes: []*scheduler.Node{node("n1", 4, 0), {Systems: []string{"x86_64-linux"}, FreeSlots: 9}},
			builds: []*scheduler.Build{
				{System: "x86_64-linux"},
				{ID: "nosystem"},
				build("ok", 0, 0),
			},
			want: as("ok", "n1"),
			bad:  true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state := &scheduler.SliceState{BuildList: tt.builds, NodeList: tt.nodes}
			got, err := planBoth(t, state, tt.cfg, t0)
			if tt.bad != (err != nil) {
				t.Fatalf("reset error %v, want one: %v", err, tt.bad)
			}
			if tt.bad && (!errors.Is(err, scheduler.ErrBadBuild) || !errors.Is(err, scheduler.ErrBadNode)) {
				t.Fatalf("reset error %v does not wrap ErrBadBuild and ErrBadNode", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}
