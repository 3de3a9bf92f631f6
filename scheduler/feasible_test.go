package scheduler

import (
	"math"
	"testing"
	"time"
)

var now0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestCheckers_Build(t *testing.T) {
	missing := []Input{{Drv: "a", Available: true}, {Drv: "b"}}
	present := []Input{{Drv: "a", Available: true}}
	tests := []struct {
		name    string
		checker buildChecker
		b       Build
		want    bool
	}{
		{"defer: none", deferChecker{}, Build{}, true},
		{"defer: past", deferChecker{}, Build{DeferUntil: now0.Add(-time.Second)}, true},
		{"defer: exactly now", deferChecker{}, Build{DeferUntil: now0}, true},
		{"defer: future", deferChecker{}, Build{DeferUntil: now0.Add(time.Nanosecond)}, false},
		{"inputs ordered: missing", inputsChecker{StrategyDerivationOrdered}, Build{Inputs: missing}, false},
		{"inputs ordered: present", inputsChecker{StrategyDerivationOrdered}, Build{Inputs: present}, true},
		{"inputs ordered: none", inputsChecker{StrategyDerivationOrdered}, Build{}, true},
		{"inputs basic: missing", inputsChecker{StrategyBasic}, Build{Inputs: missing}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.checker.ready(&tt.b, now0); got != tt.want {
				t.Fatalf("ready = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCheckers_Node(t *testing.T) {
	n := Node{Systems: []string{"x86_64-linux", "i686-linux"}, Features: []string{"kvm", "big-parallel"}}
	tests := []struct {
		name    string
		checker nodeChecker
		b       Build
		want    bool
	}{
		{"system: first", systemChecker{}, Build{System: "x86_64-linux"}, true},
		{"system: second", systemChecker{}, Build{System: "i686-linux"}, true},
		{"system: other", systemChecker{}, Build{System: "aarch64-linux"}, false},
		{"features: none required", featureChecker{}, Build{}, true},
		{"features: subset", featureChecker{}, Build{Features: []string{"kvm"}}, true},
		{"features: all", featureChecker{}, Build{Features: []string{"big-parallel", "kvm"}}, true},
		{"features: one missing", featureChecker{}, Build{Features: []string{"kvm", "nixos-test"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.checker.feasible(&tt.b, &n); got != tt.want {
				t.Fatalf("feasible = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestOrderKey_Before(t *testing.T) {
	step := 10 * time.Minute
	b := func(id string, prio int, age time.Duration) *Build {
		return &Build{ID: id, Priority: prio, Submitted: now0.Add(-age)}
	}
	tests := []struct {
		name string
		step time.Duration
		a, b *Build
		want bool // a before b
	}{
		{"higher priority", step, b("a", 2, 0), b("b", 1, 0), true},
		{"lower priority", step, b("a", 1, 0), b("b", 2, 0), false},
		{"older at equal priority", step, b("a", 1, time.Minute), b("b", 1, 0), true},
		{"one step of waiting equals one level, older wins the tie", step, b("a", 0, step), b("b", 1, 0), true},
		{"less than a step of waiting loses", step, b("a", 0, step-time.Second), b("b", 1, 0), false},
		{"id breaks full ties", step, b("a", 1, 0), b("b", 1, 0), true},
		{"no aging: priority over age", 0, b("a", 0, 1000*time.Hour), b("b", 1, 0), false},
		{"no aging: age at equal priority", 0, b("a", 1, time.Hour), b("b", 1, 0), true},
		{"priority clamped", step, b("a", math.MaxInt, 0), b("b", MaxPriority, time.Second), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ka, kb := keyOf(tt.a, tt.step), keyOf(tt.b, tt.step)
			if got := ka.before(kb); got != tt.want {
				t.Fatalf("before = %v, want %v", got, tt.want)
			}
			if tt.a.ID != tt.b.ID && kb.before(ka) == ka.before(kb) {
				t.Fatalf("order is not strict")
			}
		})
	}
}

func TestOrderKey_TimeInvariant(t *testing.T) {
	// The effective priority Priority + wait/step orders a and b the same
	// way at every instant, and so does the stored key.
	step := 7 * time.Minute
	a := &Build{ID: "a", Priority: 2, Submitted: now0}
	b := &Build{ID: "b", Priority: 0, Submitted: now0.Add(-15 * time.Minute)}
	eff := func(x *Build, at time.Time) float64 {
		return float64(x.Priority) + float64(at.Sub(x.Submitted))/float64(step)
	}
	want := keyOf(b, step).before(keyOf(a, step))
	for _, at := range []time.Time{now0, now0.Add(time.Hour), now0.Add(100 * time.Hour)} {
		if got := eff(b, at) > eff(a, at); got != want {
			t.Fatalf("at %v effective order %v, key order %v", at, got, want)
		}
	}
}

func TestCandidate_Better(t *testing.T) {
	tests := []struct {
		name string
		a, b candidate
		want bool
	}{
		{"not failed beats failed", candidate{bytes: 0, load: 9, name: "z"}, candidate{failed: true, bytes: 99, name: "a"}, true},
		{"more bytes", candidate{bytes: 2, load: 9}, candidate{bytes: 1}, true},
		{"less load", candidate{bytes: 1, load: 0.1, name: "z"}, candidate{bytes: 1, load: 0.2, name: "a"}, true},
		{"smaller name", candidate{name: "a"}, candidate{name: "b"}, true},
		{"same", candidate{name: "a"}, candidate{name: "a"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a.better(tt.b); got != tt.want {
				t.Fatalf("better = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestConfig_Validate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"default", DefaultConfig(), true},
		{"basic, no aging", Config{Strategy: StrategyBasic}, true},
		{"unknown strategy", Config{Strategy: "fifo"}, false},
		{"empty strategy", Config{}, false},
		{"negative step", Config{Strategy: StrategyBasic, AgeStep: -1}, false},
		{"step too large", Config{Strategy: StrategyBasic, AgeStep: MaxAgeStep + 1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate = %v, want ok %v", err, tt.ok)
			}
		})
	}
}
