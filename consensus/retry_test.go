package consensus

import (
	"testing"
	"time"
)

func TestFSM_FinishBuildDefers(t *testing.T) {
	t.Run("genuine retries wait longer each time", func(t *testing.T) {
		f := newTestFSM(t)
		f.mustApply(&SetSettings{Settings: Settings{Retries: 3}}, t0)
		id := f.submit(1, nil)
		var delays []time.Duration
		at := t0
		for range 3 {
			f.mustApply(&AssignBuilds{Assignments: []Assignment{{id, "n1"}}}, at)
			f.mustApply(&FinishBuild{ID: id, Node: "n1", Error: "boom"}, at)
			b := f.build(id)
			if b.State != StateQueued {
				t.Fatalf("build %s after a failure with retries left", b.State)
			}
			delays = append(delays, b.DeferUntil.Sub(at))
			at = b.DeferUntil
		}
		if delays[0] <= 0 || delays[1] <= delays[0] || delays[2] <= delays[1] {
			t.Fatalf("retry delays %v, want positive and growing", delays)
		}
	})
	t.Run("inputs held but unreachable wait without counting as failures", func(t *testing.T) {
		f := newTestFSM(t)
		f.mustApply(&SetSettings{Settings: Settings{Retries: 0}}, t0)
		f.putNar(7, "down")
		input := storePath(7, "pkg")
		id := f.submit(1, nil)
		var delays []time.Duration
		at := t0
		for range 3 {
			f.mustApply(&AssignBuilds{Assignments: []Assignment{{id, "n1"}}}, at)
			f.mustApply(&FinishBuild{ID: id, Node: "n1", MissingInputs: []string{input}}, at)
			b := f.build(id)
			if b.State != StateQueued || len(b.WaitingFor) != 0 {
				t.Fatalf("build %s waiting for %v, want queued and deferred", b.State, b.WaitingFor)
			}
			delays = append(delays, b.DeferUntil.Sub(at))
			at = b.DeferUntil
		}
		if delays[0] <= 0 || delays[1] <= delays[0] {
			t.Fatalf("delays %v, want positive and growing", delays)
		}
		// It then builds, and a failure now is its first.
		f.mustApply(&AssignBuilds{Assignments: []Assignment{{id, "n1"}}}, at)
		f.mustApply(&FinishBuild{ID: id, Node: "n1", Error: "boom"}, at)
		if b := f.build(id); b.State != StateFailed {
			t.Fatalf("build %s after its one allowed failure, want failed", b.State)
		}
	})
	t.Run("inputs nobody holds wait for them, not for a time", func(t *testing.T) {
		f := newTestFSM(t)
		id := f.submit(1, nil)
		f.mustApply(&AssignBuilds{Assignments: []Assignment{{id, "n1"}}}, t0)
		f.mustApply(&FinishBuild{ID: id, Node: "n1", MissingInputs: []string{storePath(8, "absent")}}, t0)
		if b := f.build(id); len(b.WaitingFor) != 1 || !b.DeferUntil.IsZero() {
			t.Fatalf("waiting for %v, deferred until %v; want waiting, not deferred", b.WaitingFor, b.DeferUntil)
		}
	})
}
