package scheduler

import (
	"fmt"
	"iter"
	"time"
)

// State is the read-only view the scheduler plans from. Implementations
// must yield each build and node at most once per call; the scheduler never
// modifies what they yield.
type State interface {
	// Builds yields the queued builds (those waiting for a node).
	Builds() iter.Seq[*Build]
	// Nodes yields the nodes that may receive builds.
	Nodes() iter.Seq[*Node]
}

// Build is one queued build as the scheduler sees it.
type Build struct {
	// ID identifies the build; required.
	ID string
	// Drv is the store path of the build's derivation. When the build
	// succeeds, Planner.MarkAvailable(Drv) releases the builds waiting on it.
	Drv string
	// Priority: higher goes first. Clamped to ±MaxPriority for ordering.
	Priority int
	// System the derivation builds for (e.g. "x86_64-linux"); required.
	System string
	// Features the node must all offer (requiredSystemFeatures).
	Features []string
	// Tags are the user's labels; the scheduler carries them but does not
	// decide on them.
	Tags map[string]string
	// Submitted is when the build entered the queue; it drives aging.
	Submitted time.Time
	// DeferUntil, when set, keeps the build queued until that time.
	DeferUntil time.Time
	// Inputs are the build's input derivations.
	Inputs []Input
	// InputNars are the nars the build needs (outputs of its inputs and its
	// input sources), each path listed once, with sizes for locality.
	InputNars []Nar
	// FailedOn names the nodes this build already failed on.
	FailedOn []string
}

// Input is one input derivation of a build.
type Input struct {
	// Drv is the input derivation's store path.
	Drv string
	// Available is true when all its outputs are stored in the mesh.
	Available bool
}

// Nar is a store path whose nar a build needs, and its size in bytes.
type Nar struct {
	Path string
	Size int64
}

// Node is one node as the scheduler sees it.
type Node struct {
	// Name identifies the node; required.
	Name string
	// Systems the node builds for.
	Systems []string
	// Features the node offers (supportedFeatures).
	Features []string
	// FreeSlots is how many more builds the node accepts now.
	FreeSlots int
	// Load breaks locality ties: lower wins. Any consistent measure works
	// (running/max jobs, load average).
	Load float64
	// Nars lists the store paths whose nars the node holds.
	Nars []string
}

// Assignment sends one build to one node.
type Assignment struct {
	Build string `json:"build"`
	Node  string `json:"node"`
}

// Plan is the outcome of one planning round: assignments in the order the
// scheduler made them (highest effective priority first). The caller
// commits them; builds it does not commit simply stay queued.
type Plan struct {
	Assignments []Assignment `json:"assignments"`
}

// Strategy selects how inputs gate a build; it is chosen per mesh.
type Strategy string

const (
	// StrategyBasic orders by priority and age; inputs may be missing (the
	// builder fetches or builds them itself).
	StrategyBasic Strategy = "basic"
	// StrategyDerivationOrdered makes a build eligible only once the
	// outputs of all its input derivations are available in the mesh.
	StrategyDerivationOrdered Strategy = "derivation-ordered"
)

// MaxPriority bounds |Priority| for ordering, and MaxAgeStep bounds
// Config.AgeStep, so that effective-priority keys fit in an int64.
const (
	MaxPriority = 10000
	MaxAgeStep  = 7 * 24 * time.Hour
)

// Config tunes the scheduler.
type Config struct {
	// Strategy is StrategyBasic or StrategyDerivationOrdered.
	Strategy Strategy
	// AgeStep is the waiting time worth one priority level: a build's
	// effective priority is Priority + (now-Submitted)/AgeStep (not
	// rounded), so a priority-0 build that has waited 3×AgeStep goes before
	// a priority-2 build submitted now. Zero disables aging (priority, then
	// submit time). At most MaxAgeStep.
	AgeStep time.Duration
}

// DefaultConfig returns the derivation-ordered strategy with one priority
// level gained per 10 minutes of waiting.
func DefaultConfig() Config {
	return Config{Strategy: StrategyDerivationOrdered, AgeStep: 10 * time.Minute}
}

// Validate reports whether the config can be used.
func (c Config) Validate() error {
	if _, err := ParseStrategy(string(c.Strategy)); err != nil {
		return err
	}
	if c.AgeStep < 0 || c.AgeStep > MaxAgeStep {
		return fmt.Errorf("age step %v outside [0, %v]: %w", c.AgeStep, MaxAgeStep, ErrBadConfig)
	}
	return nil
}

// ParseStrategy maps a strategy name to a Strategy.
func ParseStrategy(s string) (Strategy, error) {
	switch Strategy(s) {
	case StrategyBasic, StrategyDerivationOrdered:
		return Strategy(s), nil
	}
	return "", fmt.Errorf("strategy %q: %w", s, ErrBadConfig)
}

// SliceState is a State backed by two slices.
type SliceState struct {
	BuildList []*Build
	NodeList  []*Node
}

var _ State = (*SliceState)(nil)

// Builds yields s.BuildList.
func (s *SliceState) Builds() iter.Seq[*Build] {
	return func(yield func(*Build) bool) {
		for _, b := range s.BuildList {
			if !yield(b) {
				return
			}
		}
	}
}

// Nodes yields s.NodeList.
func (s *SliceState) Nodes() iter.Seq[*Node] {
	return func(yield func(*Node) bool) {
		for _, n := range s.NodeList {
			if !yield(n) {
				return
			}
		}
	}
}
