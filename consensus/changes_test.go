package consensus

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// taken waits for the feed's signal and returns what it holds.
func taken(t *testing.T, cf *ChangeFeed) Changes {
	t.Helper()
	select {
	case <-cf.C():
	case <-time.After(5 * time.Second):
		t.Fatal("no change signal")
	}
	return cf.Take()
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func TestFSM_WatchChanges(t *testing.T) {
	t.Run("submit assign start finish report their builds", func(t *testing.T) {
		f := newTestFSM(t)
		cf := f.WatchChanges()
		defer cf.Close()
		a := f.submit(1, nil)
		b := f.submit(2, nil)
		if c := taken(t, cf); !slices.Equal(sorted(c.Builds), sorted([]string{a, b})) || len(c.Nars) != 0 || c.Nodes || c.Settings || c.Reset {
			t.Fatalf("after submits: %+v", c)
		}
		f.mustApply(&AssignBuilds{Assignments: []Assignment{{a, "n1"}}}, t0)
		if c := taken(t, cf); !slices.Equal(c.Builds, []string{a}) {
			t.Fatalf("after assign: %+v", c)
		}
		f.mustApply(&StartBuild{ID: a, Node: "n1"}, t0)
		f.putNar(1001, "n1")
		f.mustApply(&FinishBuild{ID: a, Node: "n1", Success: true, Outputs: []Output{{Name: "out", Path: storePath(1001, "pkg")}}}, t0)
		c := taken(t, cf)
		if !slices.Equal(c.Builds, []string{a}) || !slices.Equal(c.Nars, []string{hashOf(1001)}) {
			t.Fatalf("after start, nar and finish: %+v", c)
		}
		if c := cf.Take(); !c.Empty() {
			t.Fatalf("second take: %+v", c)
		}
	})
	t.Run("nar arrival reports the nar and the builds it releases", func(t *testing.T) {
		f := newTestFSM(t)
		id := f.running(1, "n1")
		f.mustApply(&FinishBuild{ID: id, Node: "n1", MissingInputs: []string{storePath(8, "pkg")}}, t0)
		cf := f.WatchChanges()
		defer cf.Close()
		f.putNar(8, "n2")
		c := taken(t, cf)
		if !slices.Equal(c.Builds, []string{id}) || !slices.Equal(c.Nars, []string{hashOf(8)}) {
			t.Fatalf("changes = %+v", c)
		}
		f.mustApply(&SetNarHolder{Hash: hashOf(8), Node: "n2", Present: false}, t0)
		if c := taken(t, cf); len(c.Builds) != 0 || !slices.Equal(c.Nars, []string{hashOf(8)}) {
			t.Fatalf("holder removed: %+v", c)
		}
	})
	t.Run("nodes and settings", func(t *testing.T) {
		f := newTestFSM(t)
		cf := f.WatchChanges()
		defer cf.Close()
		f.mustApply(&PutNode{Node: Node{Name: "n1", Raft: "127.0.0.1:1"}}, t0)
		if c := taken(t, cf); !c.Nodes || c.Settings || len(c.Builds) != 0 {
			t.Fatalf("put node: %+v", c)
		}
		f.putNar(3, "n1")
		f.mustApply(&RemoveNode{Name: "n1"}, t0)
		if c := taken(t, cf); !c.Nodes || !slices.Equal(c.Nars, []string{hashOf(3)}) {
			t.Fatalf("remove node: %+v", c)
		}
		f.mustApply(&SetSettings{Settings: Settings{Strategy: "basic"}}, t0)
		if c := taken(t, cf); !c.Settings || c.Nodes {
			t.Fatalf("settings: %+v", c)
		}
	})
	t.Run("a failed command reports nothing", func(t *testing.T) {
		f := newTestFSM(t)
		id := f.submit(1, nil)
		cf := f.WatchChanges()
		defer cf.Close()
		// Cancel changes id, then fails on the unknown build: rolled back.
		res := f.apply(&CancelBuilds{IDs: []string{id, NewBuildID(t0)}}, t0)
		if err, _ := res.(error); !errors.Is(err, ErrNotFound) {
			t.Fatalf("cancel: %v", res)
		}
		if c := cf.Take(); !c.Empty() {
			t.Fatalf("after a failed command: %+v", c)
		}
		if f.build(id).State != StateQueued {
			t.Fatal("failed cancel changed the build")
		}
	})
	t.Run("a batch reports only its committed commands", func(t *testing.T) {
		f := newTestFSM(t)
		a, b := f.submit(1, nil), f.submit(2, nil)
		cf := f.WatchChanges()
		defer cf.Close()
		resp := f.ApplyBatch([]*raft.Log{
			f.entry(&CancelBuilds{IDs: []string{a}}, t0),
			f.entry(&CancelBuilds{IDs: []string{b, NewBuildID(t0)}}, t0),
		})
		if _, isErr := resp[1].(error); !isErr || resp[0] != nil {
			t.Fatalf("responses = %v", resp)
		}
		if c := taken(t, cf); !slices.Equal(c.Builds, []string{a}) {
			t.Fatalf("changes = %+v", c)
		}
	})
	t.Run("restore reports a reset", func(t *testing.T) {
		f := newTestFSM(t)
		f.submit(1, nil)
		sink := snapshotOf(t, f.FSM)
		cf := f.WatchChanges()
		defer cf.Close()
		f.submit(2, nil)
		if err := f.Restore(sink.reader()); err != nil {
			t.Fatal(err)
		}
		if c := taken(t, cf); !c.Reset || len(c.Builds) != 0 {
			t.Fatalf("after restore: %+v", c)
		}
		if c := cf.Take(); !c.Empty() {
			t.Fatalf("reset is reported once: %+v", c)
		}
	})
	t.Run("overflow reports a reset", func(t *testing.T) {
		f := newTestFSM(t)
		cf := f.WatchChanges()
		defer cf.Close()
		cf.max = 3
		for i := range 4 {
			f.submit(i+1, nil)
		}
		if c := taken(t, cf); !c.Reset || len(c.Builds) != 0 {
			t.Fatalf("after overflow: %+v", c)
		}
		id := f.submit(9, nil)
		if c := taken(t, cf); c.Reset || !slices.Equal(c.Builds, []string{id}) {
			t.Fatalf("after the reset was taken: %+v", c)
		}
	})
	t.Run("close stops delivery", func(t *testing.T) {
		f := newTestFSM(t)
		cf := f.WatchChanges()
		other := f.WatchChanges()
		defer other.Close()
		cf.Close()
		id := f.submit(1, nil)
		if c := cf.Take(); !c.Empty() {
			t.Fatalf("closed feed got %+v", c)
		}
		select {
		case <-cf.C():
			t.Fatal("closed feed signalled")
		default:
		}
		if c := taken(t, other); !slices.Equal(c.Builds, []string{id}) {
			t.Fatalf("open feed got %+v", c)
		}
		other.Close()
		if f.watched.Load() != 0 {
			t.Fatalf("%d feeds counted after closing all", f.watched.Load())
		}
	})
}
