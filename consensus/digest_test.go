package consensus

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func digestOf(t *testing.T, f *FSM) string {
	t.Helper()
	d, err := f.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestFSM_Digest(t *testing.T) {
	// Two replicas apply the same log, one entry at a time and in one
	// batch, with an undecodable entry in it: same digest, though the
	// applied index each records differs.
	a, b := newTestFSM(t), newTestFSM(t)
	var logs []*raft.Log
	for i, cmd := range []Command{
		&SetSettings{Settings: Settings{Strategy: "s"}},
		&PutNode{Node: Node{Name: "n1"}},
		&SubmitBuilds{Builds: []Build{{Derivation: storePath(1, "a.drv"), System: "x"}}},
	} {
		logs = append(logs, a.entry(cmd, t0.Add(time.Duration(i)*time.Second)))
	}
	logs = append(logs, &raft.Log{Index: 4, Term: 1, Type: raft.LogCommand, Data: []byte{99, 0, 0, 0, 0, 0, 0, 0, 0}})
	for _, l := range logs {
		a.Apply(l)
	}
	b.ApplyBatch(logs[:2])
	b.ApplyBatch(logs[2:]) // records no applied index: it holds a refused entry
	da, db := digestOf(t, a.FSM), digestOf(t, b.FSM)
	if da != db || len(da) != 64 {
		t.Fatalf("digests of the same log: %s, %s", da, db)
	}
	t.Run("a restored replica agrees", func(t *testing.T) {
		c := newTestFSM(t)
		if err := c.Restore(snapshotOf(t, a.FSM).reader()); err != nil {
			t.Fatal(err)
		}
		if got := digestOf(t, c.FSM); got != da {
			t.Fatalf("restored digest %s, want %s", got, da)
		}
	})
	t.Run("any change of state changes it", func(t *testing.T) {
		for name, cmd := range map[string]Command{
			"node":     &PutNode{Node: Node{Name: "n1", HTTP: "x"}},
			"settings": &SetSettings{Settings: Settings{Strategy: "t"}},
			"build":    &SubmitBuilds{Builds: []Build{{Derivation: storePath(2, "a.drv"), System: "x"}}},
		} {
			c := newTestFSM(t)
			if err := c.Restore(snapshotOf(t, a.FSM).reader()); err != nil {
				t.Fatal(err)
			}
			c.index = 10
			c.mustApply(cmd, t0)
			if digestOf(t, c.FSM) == da {
				t.Errorf("%s: digest unchanged", name)
			}
		}
	})
}
