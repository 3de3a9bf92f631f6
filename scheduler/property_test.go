package scheduler_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/drvmesh/drvmesh/scheduler"
	"github.com/drvmesh/drvmesh/scheduler/schedtest"
)

// TestPlanner_AgreesWithSchedule drives random farms through many rounds
// (plan, commit, builds finish or fail, time passes) and requires the
// incremental Planner to return exactly Schedule's plan every round.
func TestPlanner_AgreesWithSchedule(t *testing.T) {
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 7))
		cfg := scheduler.Config{Strategy: scheduler.StrategyDerivationOrdered}
		if seed%2 == 1 {
			cfg.Strategy = scheduler.StrategyBasic
		}
		if seed%3 != 0 {
			cfg.AgeStep = time.Duration(1+rng.IntN(30)) * time.Minute
		}
		gen := schedtest.GenConfig{
			Builds: 50 + rng.IntN(400),
			Nodes:  2 + rng.IntN(30),
			Seed:   seed,
			Busy:   rng.Float64(),
		}
		t.Run(fmt.Sprintf("seed=%d/%s/step=%v", seed, cfg.Strategy, cfg.AgeStep), func(t *testing.T) {
			farm := schedtest.Generate(gen)
			h, err := schedtest.NewHarness(farm.State, cfg, true)
			if err != nil {
				t.Fatal(err)
			}
			var running []string
			now := farm.Now
			assigned := 0
			for round := range 25 {
				ref, inc := h.Plan(now)
				if !slices.Equal(ref.Assignments, inc.Assignments) {
					t.Fatalf("round %d: plans differ\nschedule: %v\nplanner:  %v", round, ref.Assignments, inc.Assignments)
				}
				// The Planner must not change its mind when asked twice.
				if again := h.Planner.Plan(now); !slices.Equal(again.Assignments, inc.Assignments) {
					t.Fatalf("round %d: second plan differs: %v vs %v", round, again.Assignments, inc.Assignments)
				}
				for _, a := range ref.Assignments {
					running = append(running, a.Build)
				}
				assigned += len(ref.Assignments)
				if err := h.Apply(ref); err != nil {
					t.Fatal(err)
				}
				rng.Shuffle(len(running), func(i, j int) { running[i], running[j] = running[j], running[i] })
				done := rng.IntN(len(running) + 1)
				for _, id := range running[:done] {
					if rng.IntN(8) == 0 {
						err = h.Fail(id)
					} else {
						err = h.Finish(id, schedtest.OutPath(h.Running[id].Build.Drv))
					}
					if err != nil {
						t.Fatal(err)
					}
				}
				running = running[done:]
				if round%5 == 4 {
					// A full rebuild must plan as the incremental state did.
					if err := h.Planner.Reset(h.State); err != nil {
						t.Fatal(err)
					}
				}
				now = now.Add(time.Duration(rng.IntN(20)) * time.Minute)
			}
			if assigned == 0 {
				t.Fatalf("no build was ever assigned: the test exercised nothing")
			}
		})
	}
}
