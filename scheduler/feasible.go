package scheduler

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// A buildChecker says whether a build may be scheduled at all at time now.
type buildChecker interface {
	ready(b *Build, now time.Time) bool
}

// A nodeChecker says whether a node can ever run a build, slots aside.
type nodeChecker interface {
	feasible(b *Build, n *Node) bool
}

// deferChecker holds back builds deferred until after now.
type deferChecker struct{}

func (deferChecker) ready(b *Build, now time.Time) bool { return !b.DeferUntil.After(now) }

// inputsChecker, under the derivation-ordered strategy, holds back builds
// with an input derivation whose outputs the mesh lacks.
type inputsChecker struct{ strategy Strategy }

func (c inputsChecker) ready(b *Build, _ time.Time) bool {
	if c.strategy != StrategyDerivationOrdered {
		return true
	}
	for _, in := range b.Inputs {
		if !in.Available {
			return false
		}
	}
	return true
}

// systemChecker requires the node to build for the build's system.
type systemChecker struct{}

func (systemChecker) feasible(b *Build, n *Node) bool { return slices.Contains(n.Systems, b.System) }

// featureChecker requires the node to offer every required feature.
type featureChecker struct{}

func (featureChecker) feasible(b *Build, n *Node) bool {
	for _, f := range b.Features {
		if !slices.Contains(n.Features, f) {
			return false
		}
	}
	return true
}

// buildCheckers and nodeCheckers are the chains both Schedule and Planner
// apply; a build or node passes a chain when it passes every link.
func buildCheckers(cfg Config) []buildChecker {
	return []buildChecker{deferChecker{}, inputsChecker{strategy: cfg.Strategy}}
}

var nodeCheckers = []nodeChecker{systemChecker{}, featureChecker{}}

func readyAll(chain []buildChecker, b *Build, now time.Time) bool {
	for _, c := range chain {
		if !c.ready(b, now) {
			return false
		}
	}
	return true
}

func feasibleAll(b *Build, n *Node) bool {
	for _, c := range nodeCheckers {
		if !c.feasible(b, n) {
			return false
		}
	}
	return true
}

func validBuild(b *Build) error {
	if b == nil || b.ID == "" || b.System == "" {
		return fmt.Errorf("build %v: id and system are required: %w", buildID(b), ErrBadBuild)
	}
	return nil
}

func buildID(b *Build) string {
	if b == nil {
		return "<nil>"
	}
	return b.ID
}

func validNode(n *Node) error {
	if n == nil || n.Name == "" {
		return fmt.Errorf("node without a name: %w", ErrBadNode)
	}
	return nil
}

// orderKey places a build in the queue. Effective priority at time now is
// Priority + (now-Submitted)/AgeStep; multiplied by AgeStep that is
// Priority*AgeStep - Submitted + now, and now is the same for every build,
// so k1 = Priority*AgeStep - Submitted orders builds the same way at every
// instant: the queue never needs re-sorting as time passes. Larger k1 goes
// first, then smaller k2 (submit time), then smaller id.
type orderKey struct {
	k1, k2 int64
	id     string
}

func keyOf(b *Build, step time.Duration) orderKey {
	sub := unixNano(b.Submitted)
	p := int64(min(max(b.Priority, -MaxPriority), MaxPriority))
	if step <= 0 {
		return orderKey{k1: p, k2: sub, id: b.ID}
	}
	return orderKey{k1: p*int64(step) - sub, k2: sub, id: b.ID}
}

// before reports whether a goes before b.
func (a orderKey) before(b orderKey) bool {
	if a.k1 != b.k1 {
		return a.k1 > b.k1
	}
	if a.k2 != b.k2 {
		return a.k2 < b.k2
	}
	return a.id < b.id
}

// unixNano maps the zero time to 0 and clamps times outside the int64
// nanosecond range.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	const maxSec = math.MaxInt64/1_000_000_000 - 1
	s := t.Unix()
	if s >= maxSec {
		return math.MaxInt64 / 2
	}
	if s <= -maxSec {
		return math.MinInt64 / 2
	}
	return t.UnixNano()
}

// deferNano is the instant a build becomes due; math.MinInt64 when it is
// not deferred.
func deferNano(b *Build) int64 {
	if b.DeferUntil.IsZero() {
		return math.MinInt64
	}
	return unixNano(b.DeferUntil)
}

// candidate is one node competing for one build.
type candidate struct {
	failed bool    // the build already failed there
	bytes  int64   // bytes of the build's input nars the node holds
	load   float64 // node load
	name   string
}

// better is the node ranking: a node the build has not failed on, then most
// input bytes held, then least load, then smallest name.
func (a candidate) better(b candidate) bool {
	if a.failed != b.failed {
		return !a.failed
	}
	if a.bytes != b.bytes {
		return a.bytes > b.bytes
	}
	if a.load != b.load {
		return a.load < b.load
	}
	return a.name < b.name
}

// loadOf makes NaN loads rank last so the ranking stays a total order.
func loadOf(n *Node) float64 {
	if math.IsNaN(n.Load) {
		return math.Inf(1)
	}
	return n.Load
}
