package consensus

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

type testFSM struct {
	*FSM
	t     testing.TB
	index uint64
}

func newTestFSM(t testing.TB) *testFSM {
	t.Helper()
	f, err := NewFSM(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &testFSM{FSM: f, t: t}
}

func (f *testFSM) entry(cmd Command, at time.Time) *raft.Log {
	f.t.Helper()
	data, err := EncodeCommand(cmd, at)
	if err != nil {
		f.t.Fatal(err)
	}
	f.index++
	return &raft.Log{Index: f.index, Term: 1, Type: raft.LogCommand, Data: data}
}

// apply applies cmd at time at and returns the result or error value.
func (f *testFSM) apply(cmd Command, at time.Time) any {
	f.t.Helper()
	return f.Apply(f.entry(cmd, at))
}

// mustApply fails the test when cmd returns an error value.
func (f *testFSM) mustApply(cmd Command, at time.Time) any {
	f.t.Helper()
	res := f.apply(cmd, at)
	if err, ok := res.(error); ok {
		f.t.Fatalf("%T: %v", cmd, err)
	}
	return res
}

// dump is the full state as snapshot bytes, for "changed nothing" checks.
func (f *testFSM) dump() []byte {
	f.t.Helper()
	var buf bytes.Buffer
	err := f.view(func(tx *bolt.Tx) error { return writeSnapshot(tx, &buf) })
	if err != nil {
		f.t.Fatal(err)
	}
	return buf.Bytes()
}

func (f *testFSM) build(id string) *Build {
	f.t.Helper()
	b, err := f.GetBuild(id)
	if err != nil {
		f.t.Fatal(err)
	}
	return b
}

func storePath(i int, name string) string {
	return fmt.Sprintf("/nix/store/%032d-%s", i, name)
}

func hashOf(i int) string { return fmt.Sprintf("%032d", i) }

// submit creates one queued build of drv i and returns its id.
func (f *testFSM) submit(i int, tags map[string]string) string {
	f.t.Helper()
	res := f.mustApply(&SubmitBuilds{
		Builds: []Build{{Derivation: storePath(i, "pkg.drv"), System: "x86_64-linux", Tags: tags}},
		Drvs:   []Drv{{Path: storePath(i, "pkg.drv"), System: "x86_64-linux", Outputs: map[string]string{"out": storePath(1000+i, "pkg")}}},
	}, t0.Add(time.Duration(i)*time.Second)).(*SubmitResult)
	return res.IDs[0]
}

// running returns a build of drv i scheduled and started on node.
func (f *testFSM) running(i int, node string) string {
	f.t.Helper()
	id := f.submit(i, nil)
	f.mustApply(&AssignBuilds{Assignments: []Assignment{{BuildID: id, Node: node}}}, t0)
	f.mustApply(&StartBuild{ID: id, Node: node}, t0.Add(time.Minute))
	return id
}

func (f *testFSM) putNar(i int, holder string) {
	f.t.Helper()
	f.mustApply(&PutNarInfos{Holder: holder, NarInfos: []NarInfo{{
		StorePath: storePath(i, "pkg"), NarHash: "sha256:" + hashOf(i), NarSize: int64(100 + i),
	}}}, t0)
}

func eventTypes(t *testing.T, f *testFSM) []string {
	t.Helper()
	evs, err := f.PendingEvents(0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

func TestFSM_Apply(t *testing.T) {
	t.Run("submit creates queued builds with events", func(t *testing.T) {
		f := newTestFSM(t)
		id := f.submit(1, map[string]string{"job": "a"})
		b := f.build(id)
		if b.State != StateQueued || b.Derivation != storePath(1, "pkg.drv") || b.Tags["job"] != "a" || !b.CreatedAt.Equal(t0.Add(time.Second)) {
			t.Fatalf("build = %+v", b)
		}
		if at, _ := BuildIDTime(id); !at.Equal(t0.Add(time.Second)) {
			t.Fatalf("id time = %v", at)
		}
		if d, err := f.Drv(storePath(1, "pkg.drv")); err != nil || d.Outputs["out"] != storePath(1001, "pkg") {
			t.Fatalf("drv = %+v, %v", d, err)
		}
		if got := eventTypes(t, f); !slices.Equal(got, []string{EventBuildSubmitted}) {
			t.Fatalf("events = %v", got)
		}
	})
	t.Run("submit keeps given ids and rejects duplicates", func(t *testing.T) {
		f := newTestFSM(t)
		id := NewBuildID(t0)
		b := Build{ID: id, Derivation: storePath(1, "a.drv"), System: "s"}
		f.mustApply(&SubmitBuilds{Builds: []Build{b}}, t0)
		before := f.dump()
		res := f.apply(&SubmitBuilds{Builds: []Build{{Derivation: storePath(2, "b.drv"), System: "s"}, b}}, t0)
		if err, _ := res.(error); !errors.Is(err, ErrBadCommand) {
			t.Fatalf("duplicate id: %v", res)
		}
		if !bytes.Equal(before, f.dump()) {
			t.Fatal("rejected submit changed the state")
		}
	})
	t.Run("submit rejects bad content", func(t *testing.T) {
		for _, b := range []Build{
			{Derivation: "not-a-path", System: "s"},
			{Derivation: storePath(1, "a"), System: "s"},
			{Derivation: storePath(1, "a.drv")},
			{ID: "zz", Derivation: storePath(1, "a.drv"), System: "s"},
		} {
			f := newTestFSM(t)
			before := f.dump()
			if err, _ := f.apply(&SubmitBuilds{Builds: []Build{b}}, t0).(error); !errors.Is(err, ErrBadCommand) {
				t.Fatalf("%+v: err = %v", b, err)
			}
			if !bytes.Equal(before, f.dump()) {
				t.Fatalf("%+v: changed the state", b)
			}
		}
	})
	t.Run("assign skips builds no longer queued", func(t *testing.T) {
		f := newTestFSM(t)
		a, b := f.submit(1, nil), f.submit(2, nil)
		f.mustApply(&CancelBuilds{IDs: []string{b}}, t0)
		res := f.mustApply(&AssignBuilds{Assignments: []Assignment{{a, "n1"}, {b, "n1"}, {NewBuildID(t0), "n1"}}}, t0).(*AssignResult)
		if !slices.Equal(res.IDs, []string{a}) {
			t.Fatalf("assigned %v", res.IDs)
		}
		if got := f.build(a); got.State != StateScheduled || got.Node != "n1" {
			t.Fatalf("build = %+v", got)
		}
		if got := f.build(b); got.State != StateCanceled {
			t.Fatalf("canceled build now %s", got.State)
		}
	})
	t.Run("start and invalid starts", func(t *testing.T) {
		f := newTestFSM(t)
		id := f.submit(1, nil)
		before := f.dump()
		if err, _ := f.apply(&StartBuild{ID: id, Node: "n1"}, t0).(error); !errors.Is(err, ErrBadTransition) {
			t.Fatalf("start of queued build: %v", err)
		}
		f.mustApply(&AssignBuilds{Assignments: []Assignment{{id, "n1"}}}, t0)
		before = f.dump()
		if err, _ := f.apply(&StartBuild{ID: id, Node: "n2"}, t0).(error); !errors.Is(err, ErrBadTransition) {
			t.Fatalf("start on other node: %v", err)
		}
		if !bytes.Equal(before, f.dump()) {
			t.Fatal("rejected start changed the state")
		}
		f.mustApply(&StartBuild{ID: id, Node: "n1"}, t0.Add(time.Minute))
		b := f.build(id)
		if b.State != StateBuilding || len(b.Attempts) != 1 || b.Attempts[0].Node != "n1" || !b.StartedAt.Equal(t0.Add(time.Minute)) {
			t.Fatalf("build = %+v", b)
		}
	})
	t.Run("finish success needs output nars", func(t *testing.T) {
		f := newTestFSM(t)
		id := f.running(1, "n1")
		out := []Output{{Name: "out", Path: storePath(1001, "pkg")}}
		before := f.dump()
		if err, _ := f.apply(&FinishBuild{ID: id, Node: "n1", Success: true, Outputs: out}, t0).(error); !errors.Is(err, ErrOutputsMissing) {
			t.Fatalf("success without nar: %v", err)
		}
		if !bytes.Equal(before, f.dump()) {
			t.Fatal("rejected finish changed the state")
		}
		f.putNar(1001, "n1")
		f.mustApply(&FinishBuild{ID: id, Node: "n1", Success: true, Outputs: out}, t0.Add(2*time.Minute))
		b := f.build(id)
		if b.State != StateSucceeded || b.Outputs[0].NarHash != "sha256:"+hashOf(1001) || b.Outputs[0].NarSize != 1101 ||
			b.Attempts[0].Result != ResultSucceeded || !b.FinishedAt.Equal(t0.Add(2*time.Minute)) {
			t.Fatalf("build = %+v", b)
		}
		if got := eventTypes(t, f); !slices.Equal(got, []string{EventBuildSubmitted, EventBuildStarted, EventBuildSucceeded}) {
			t.Fatalf("events = %v", got)
		}
		if err, _ := f.apply(&FinishBuild{ID: id, Node: "n1", Error: "late"}, t0).(error); !errors.Is(err, ErrBadTransition) {
			t.Fatalf("finish of finished build: %v", err)
		}
	})
	t.Run("finish with outputs records nars and result in one entry", func(t *testing.T) {
		f := newTestFSM(t)
		id := f.running(1, "n1")
		nar := NarInfo{StorePath: storePath(1001, "pkg"), NarHash: "sha256:" + hashOf(1001), NarSize: 1101}
		cmd := &FinishOutputs{
			NarInfos: PutNarInfos{Holder: "n1", NarInfos: []NarInfo{nar}},
			Finish:   FinishBuild{ID: id, Node: "n1", Success: true, Outputs: []Output{{Name: "out", Path: nar.StorePath}}},
		}
		// Refused finish (wrong node): nothing is recorded, not even the nar.
		bad := *cmd
		bad.Finish.Node = "n2"
		before := f.dump()
		if err, _ := f.apply(&bad, t0).(error); !errors.Is(err, ErrBadTransition) {
			t.Fatalf("finish from another node: %v", err)
		}
		if !bytes.Equal(before, f.dump()) {
			t.Fatal("refused finish changed the state")
		}
		f.mustApply(cmd, t0.Add(2*time.Minute))
		b := f.build(id)
		if b.State != StateSucceeded || b.Outputs[0].NarHash != nar.NarHash || b.Outputs[0].NarSize != nar.NarSize {
			t.Fatalf("build = %+v", b)
		}
		ni, err := f.NarInfoByHash(hashOf(1001))
		if err != nil || !slices.Equal(ni.Holders, []string{"n1"}) {
			t.Fatalf("nar record = %+v, %v", ni, err)
		}
		// The command survives its encoding.
		data, err := EncodeCommand(cmd, t0)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeCommand(data)
		if err != nil || !reflect.DeepEqual(back, Command(cmd)) {
			t.Fatalf("decoded %#v, %v", back, err)
		}
	})
	t.Run("fail queued builds", func(t *testing.T) {
		f := newTestFSM(t)
		queued := f.submit(1, nil)
		running := f.running(2, "n1")
		before := f.dump()
		if err, _ := f.apply(&FailQueued{IDs: []string{queued}}, t0).(error); !errors.Is(err, ErrBadCommand) {
			t.Fatalf("fail without an error: %v", err)
		}
		if !bytes.Equal(before, f.dump()) {
			t.Fatal("refused command changed the state")
		}
		res := f.mustApply(&FailQueued{IDs: []string{queued, running, "00000000000000000000000000000000"}, Error: "input x failed"}, t0.Add(time.Minute))
		if ids := res.(*RequeueResult).IDs; !slices.Equal(ids, []string{queued}) {
			t.Fatalf("failed %v, want only the queued build", ids)
		}
		if b := f.build(queued); b.State != StateFailed || b.Error != "input x failed" || !b.FinishedAt.Equal(t0.Add(time.Minute)) {
			t.Fatalf("queued build = %+v", b)
		}
		if b := f.build(running); b.State != StateBuilding {
			t.Fatalf("running build = %+v", b)
		}
		// Again: nothing left to fail, nothing changes.
		events := len(eventTypes(t, f))
		res = f.mustApply(&FailQueued{IDs: []string{queued}, Error: "other"}, t0.Add(2*time.Minute))
		if b := f.build(queued); len(res.(*RequeueResult).IDs) != 0 || b.Error != "input x failed" || len(eventTypes(t, f)) != events {
			t.Fatalf("repeated command failed %v, build %+v", res.(*RequeueResult).IDs, b)
		}
	})
	t.Run("failure retries then fails", func(t *testing.T) {
		f := newTestFSM(t)
		f.mustApply(&SetSettings{Settings: Settings{Retries: 1}}, t0)
		id := f.running(1, "n1")
		f.mustApply(&FinishBuild{ID: id, Node: "n1", Error: "boom"}, t0)
		b := f.build(id)
		if b.State != StateQueued || !slices.Equal(b.FailedNodes, []string{"n1"}) || b.Node != "" || b.Attempts[0].Result != ResultFailed {
			t.Fatalf("after first failure: %+v", b)
		}
		f.mustApply(&AssignBuilds{Assignments: []Assignment{{id, "n2"}}}, t0)
		f.mustApply(&StartBuild{ID: id, Node: "n2"}, t0)
		f.mustApply(&FinishBuild{ID: id, Node: "n2", Error: "boom2"}, t0)
		b = f.build(id)
		if b.State != StateFailed || b.Error != "boom2" || len(b.Attempts) != 2 {
			t.Fatalf("after second failure: %+v", b)
		}
		if got := eventTypes(t, f); got[len(got)-1] != EventBuildFailed {
			t.Fatalf("events = %v", got)
		}
	})
	t.Run("missing inputs wait until the nar is put", func(t *testing.T) {
		f := newTestFSM(t)
		f.putNar(7, "n1")
		id := f.running(1, "n1")
		f.mustApply(&FinishBuild{ID: id, Node: "n1", MissingInputs: []string{storePath(8, "pkg"), storePath(7, "pkg"), storePath(9, "pkg")}}, t0)
		b := f.build(id)
		if b.State != StateQueued || !slices.Equal(b.WaitingFor, []string{storePath(8, "pkg"), storePath(9, "pkg")}) {
			t.Fatalf("build = %+v", b)
		}
		if got := eventTypes(t, f); got[len(got)-1] != EventBuildMissingInputs {
			t.Fatalf("events = %v", got)
		}
		res := f.mustApply(&AssignBuilds{Assignments: []Assignment{{id, "n2"}}}, t0).(*AssignResult)
		if len(res.IDs) != 0 {
			t.Fatal("a waiting build was assigned")
		}
		f.putNar(8, "n2")
		if b := f.build(id); !slices.Equal(b.WaitingFor, []string{storePath(9, "pkg")}) {
			t.Fatalf("waiting = %v", b.WaitingFor)
		}
		f.mustApply(&ClearWaiting{BuildID: id}, t0)
		if b := f.build(id); b.WaitingFor != nil {
			t.Fatalf("waiting = %v", b.WaitingFor)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		f := newTestFSM(t)
		q, r := f.submit(1, nil), f.running(2, "n1")
		f.mustApply(&CancelBuilds{IDs: []string{q, r}}, t0.Add(time.Hour))
		if b := f.build(r); b.State != StateCanceled || b.Attempts[0].Result != ResultCanceled || !b.FinishedAt.Equal(t0.Add(time.Hour)) {
			t.Fatalf("build = %+v", b)
		}
		x := f.submit(3, nil)
		before := f.dump()
		for _, ids := range [][]string{{x, q}, {x, NewBuildID(t0)}} {
			if err, _ := f.apply(&CancelBuilds{IDs: ids}, t0).(error); err == nil {
				t.Fatalf("cancel %v succeeded", ids)
			}
		}
		if !bytes.Equal(before, f.dump()) {
			t.Fatal("rejected cancel changed the state")
		}
	})
	t.Run("requeue node", func(t *testing.T) {
		f := newTestFSM(t)
		r1, r2 := f.running(1, "n1"), f.running(2, "n2")
		s := f.submit(3, nil)
		f.mustApply(&AssignBuilds{Assignments: []Assignment{{s, "n1"}}}, t0)
		res := f.mustApply(&RequeueNode{Node: "n1"}, t0).(*RequeueResult)
		slices.Sort(res.IDs)
		want := []string{r1, s}
		slices.Sort(want)
		if !slices.Equal(res.IDs, want) {
			t.Fatalf("requeued %v, want %v", res.IDs, want)
		}
		if b := f.build(r1); b.State != StateQueued || b.Attempts[0].Result != ResultLost {
			t.Fatalf("build = %+v", b)
		}
		if b := f.build(r2); b.State != StateBuilding {
			t.Fatalf("other node's build = %s", b.State)
		}
		c, _ := f.Counts()
		if c[StateQueued] != 2 || c[StateBuilding] != 1 || c[StateScheduled] != 0 {
			t.Fatalf("counts = %v", c)
		}
	})
	t.Run("nars and holders", func(t *testing.T) {
		f := newTestFSM(t)
		f.mustApply(&PutNode{Node: Node{Name: "n1"}}, t0)
		f.putNar(1, "n1")
		f.putNar(1, "n2")
		n, err := f.NarInfoByHash(hashOf(1))
		if err != nil || !slices.Equal(n.Holders, []string{"n1", "n2"}) {
			t.Fatalf("nar = %+v, %v", n, err)
		}
		f.mustApply(&SetNarHolder{Hash: hashOf(1), Node: "n2", Present: false}, t0)
		if held, _ := f.NarsHeldBy("n2"); len(held) != 0 {
			t.Fatalf("n2 holds %v", held)
		}
		if held, _ := f.NarsHeldBy("n1"); !slices.Equal(held, []string{hashOf(1)}) {
			t.Fatalf("n1 holds %v", held)
		}
		missing, _ := f.MissingPaths([]string{storePath(1, "pkg"), storePath(2, "pkg"), "bad"})
		if !slices.Equal(missing, []string{storePath(2, "pkg"), "bad"}) {
			t.Fatalf("missing = %v", missing)
		}
		f.mustApply(&RemoveNode{Name: "n1"}, t0)
		if missing, _ := f.MissingPaths([]string{storePath(1, "pkg")}); len(missing) != 1 {
			t.Fatal("nar still present after its only holder was removed")
		}
		if err, _ := f.apply(&SetNarHolder{Hash: hashOf(5), Node: "n1", Present: true}, t0).(error); !errors.Is(err, ErrNotFound) {
			t.Fatalf("holder of unknown nar: %v", err)
		}
		if err, _ := f.apply(&PutNarInfos{NarInfos: []NarInfo{{StorePath: "/nix/store/x", NarHash: "h", NarSize: 1}}}, t0).(error); !errors.Is(err, ErrBadCommand) {
			t.Fatalf("bad store path: %v", err)
		}
	})
	t.Run("nodes settings events", func(t *testing.T) {
		f := newTestFSM(t)
		f.mustApply(&PutNode{Node: Node{Name: "b", HTTP: "h:1", AdmittedAt: t0}}, t0)
		f.mustApply(&PutNode{Node: Node{Name: "a", Voter: true}}, t0)
		nodes, _ := f.Nodes()
		if len(nodes) != 2 || nodes[0].Name != "a" || !nodes[1].AdmittedAt.Equal(t0) {
			t.Fatalf("nodes = %+v", nodes)
		}
		if err, _ := f.apply(&RemoveNode{Name: "zz"}, t0).(error); !errors.Is(err, ErrNotFound) {
			t.Fatalf("remove unknown: %v", err)
		}
		f.mustApply(&SetSettings{Settings: Settings{Strategy: "locality", MinCopies: 2}}, t0)
		if s, _ := f.Settings(); s.Strategy != "locality" || s.MinCopies != 2 {
			t.Fatalf("settings = %+v", s)
		}
		f.submit(1, nil)
		f.submit(2, nil)
		evs, _ := f.PendingEvents(1)
		if len(evs) != 1 || evs[0].Seq != 1 {
			t.Fatalf("events = %+v", evs)
		}
		f.mustApply(&AckEvents{Seqs: []uint64{1, 99}}, t0)
		evs, _ = f.PendingEvents(0)
		if len(evs) != 1 || evs[0].Seq != 2 {
			t.Fatalf("events after ack = %+v", evs)
		}
	})
}

func TestFSM_ApplyBatch(t *testing.T) {
	t.Run("a failing command changes nothing, the others apply", func(t *testing.T) {
		f := newTestFSM(t)
		ok1 := &SubmitBuilds{Builds: []Build{{Derivation: storePath(1, "a.drv"), System: "s"}}}
		bad := &CancelBuilds{IDs: []string{NewBuildID(t0)}}
		ok2 := &SubmitBuilds{Builds: []Build{{Derivation: storePath(2, "b.drv"), System: "s"}}}
		resp := f.ApplyBatch([]*raft.Log{f.entry(ok1, t0), f.entry(bad, t0), {Index: 99, Type: raft.LogNoop}, f.entry(ok2, t0)})
		if len(resp) != 4 {
			t.Fatalf("%d responses", len(resp))
		}
		if _, ok := resp[0].(*SubmitResult); !ok {
			t.Fatalf("resp[0] = %v", resp[0])
		}
		if err, _ := resp[1].(error); !errors.Is(err, ErrNotFound) {
			t.Fatalf("resp[1] = %v", resp[1])
		}
		if _, ok := resp[3].(*SubmitResult); !ok {
			t.Fatalf("resp[3] = %v", resp[3])
		}
		c, _ := f.Counts()
		if c[StateQueued] != 2 {
			t.Fatalf("counts = %v", c)
		}
		if f.AppliedIndex() != f.index {
			t.Fatalf("applied index %d, want %d", f.AppliedIndex(), f.index)
		}
	})
	t.Run("unknown command with skip bit is ignored", func(t *testing.T) {
		f := newTestFSM(t)
		data := append([]byte{byte(SkipIfUnknown | 100)}, make([]byte, 8)...)
		if resp := f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: data}); resp != nil {
			t.Fatalf("resp = %v", resp)
		}
	})
	t.Run("unknown command without skip bit is rejected", func(t *testing.T) {
		f := newTestFSM(t)
		res := f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: append([]byte{100}, make([]byte, 8)...)})
		if err, _ := res.(error); !errors.Is(err, ErrBadCommand) {
			t.Fatalf("resp = %v", res)
		}
	})
	t.Run("subscribers are signalled", func(t *testing.T) {
		f := newTestFSM(t)
		ch, cancel := f.Subscribe()
		defer cancel()
		f.submit(1, nil)
		f.submit(2, nil)
		select {
		case <-ch:
		default:
			t.Fatal("no signal after apply")
		}
	})
}

func TestFSM_ListBuilds(t *testing.T) {
	f := newTestFSM(t)
	var ids []string
	for i := range 10 {
		ids = append(ids, f.submit(i, map[string]string{"par": fmt.Sprint(i % 2)}))
	}
	f.mustApply(&CancelBuilds{IDs: []string{ids[3], ids[4]}}, t0)
	collect := func(flt BuildFilter) []string {
		t.Helper()
		bs, err := f.ListBuilds(flt)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, b := range bs {
			out = append(out, b.ID)
		}
		return out
	}
	rev := func(idx ...int) []string {
		var out []string
		for _, i := range idx {
			out = append(out, ids[i])
		}
		return out
	}
	for _, tc := range []struct {
		name string
		flt  BuildFilter
		want []string
	}{
		{"all newest first", BuildFilter{}, rev(9, 8, 7, 6, 5, 4, 3, 2, 1, 0)},
		{"limit", BuildFilter{Limit: 3}, rev(9, 8, 7)},
		{"before", BuildFilter{Before: ids[5], Limit: 2}, rev(4, 3)},
		{"state", BuildFilter{State: StateCanceled}, rev(4, 3)},
		{"state before", BuildFilter{State: StateQueued, Before: ids[3]}, rev(2, 1, 0)},
		{"tag", BuildFilter{Tag: "par=1"}, rev(9, 7, 5, 3, 1)},
		{"tag and state", BuildFilter{Tag: "par=1", State: StateQueued, Limit: 2}, rev(9, 7)},
		{"tag before", BuildFilter{Tag: "par=0", Before: ids[4]}, rev(2, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := collect(tc.flt); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v\nwant %v", got, tc.want)
			}
		})
	}
	t.Run("queued oldest first", func(t *testing.T) {
		var got []string
		f.QueuedBuilds(func(b *Build) bool { got = append(got, b.ID); return len(got) < 4 })
		if !slices.Equal(got, rev(0, 1, 2, 5)) {
			t.Fatalf("got %v", got)
		}
	})
	t.Run("by derivation", func(t *testing.T) {
		bs, err := f.BuildsByDerivation(storePath(2, "pkg.drv"))
		if err != nil || len(bs) != 1 || bs[0].ID != ids[2] {
			t.Fatalf("got %v, %v", bs, err)
		}
	})
}

func TestFSM_Restore(t *testing.T) {
	f := newTestFSM(t)
	f.mustApply(&SetSettings{Settings: Settings{Strategy: "x"}}, t0)
	f.putNar(1001, "n1")
	id := f.running(1, "n1")
	f.mustApply(&FinishBuild{ID: id, Node: "n1", Success: true, Outputs: []Output{{Name: "out", Path: storePath(1001, "pkg")}}}, t0)
	for i := 2; i < 50; i++ {
		f.submit(i, map[string]string{"k": "v"})
	}
	f.mustApply(&PutNode{Node: Node{Name: "n1"}}, t0)

	sink := snapshotOf(t, f.FSM)

	g := newTestFSM(t)
	g.submit(999, nil) // state that Restore must discard
	if err := g.Restore(sink.reader()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.dump(), g.dump()) {
		t.Fatal("restored state differs")
	}
	if b := g.build(id); b.State != StateSucceeded {
		t.Fatalf("restored build = %+v", b)
	}
	t.Run("truncated snapshot is rejected and keeps the state", func(t *testing.T) {
		h := newTestFSM(t)
		h.submit(5, nil)
		before := h.dump()
		data := sink.Bytes()
		if err := h.Restore(readCloser(data[:len(data)-40])); !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("err = %v", err)
		}
		if !bytes.Equal(before, h.dump()) {
			t.Fatal("failed restore changed the state")
		}
	})
}

func TestFSM_NarInfoByFile(t *testing.T) {
	f := newTestFSM(t)
	file := func(h string) NarFile { return NarFile{Compression: "zstd", FileHash: "sha256:" + h, FileSize: 10} }
	rec := NarInfo{StorePath: storePath(7, "pkg"), NarHash: "sha256:" + hashOf(7), NarSize: 100, Files: []NarFile{file("aaa"), file("bbb")}}
	f.mustApply(&PutNarInfos{Holder: "n1", NarInfos: []NarInfo{rec}}, t0)
	for _, key := range []string{"aaa", "bbb"} {
		ni, err := f.NarInfoByFile(key)
		if err != nil || ni.StorePath != rec.StorePath {
			t.Fatalf("NarInfoByFile(%s) = %+v, %v", key, ni, err)
		}
	}
	rec.Files = []NarFile{file("bbb")}
	f.mustApply(&PutNarInfos{Holder: "n1", NarInfos: []NarInfo{rec}}, t0)
	if _, err := f.NarInfoByFile("aaa"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("dropped file still indexed: %v", err)
	}
	if _, err := f.NarInfoByFile("zzz"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown file: %v", err)
	}
}

func TestFSM_RestoreAppliedIndex(t *testing.T) {
	f := newTestFSM(t)
	for i := 1; i <= 5; i++ {
		f.submit(i, nil)
	}
	sink := snapshotOf(t, f.FSM)
	g := newTestFSM(t)
	if err := g.Restore(sink.reader()); err != nil {
		t.Fatal(err)
	}
	if g.AppliedIndex() != f.AppliedIndex() || g.AppliedIndex() == 0 {
		t.Fatalf("restored applied index %d, want %d", g.AppliedIndex(), f.AppliedIndex())
	}
}

func TestFSM_LatestBuild(t *testing.T) {
	f := newTestFSM(t)
	drv := storePath(7, "pkg.drv")
	older := Build{ID: NewBuildID(t0), Derivation: drv, System: "x86_64-linux", State: StateQueued}
	newer := Build{ID: NewBuildID(t0.Add(time.Second)), Derivation: drv, System: "x86_64-linux", State: StateQueued}
	f.mustApply(&SubmitBuilds{Builds: []Build{older, newer}}, t0)
	f.mustApply(&CancelBuilds{IDs: []string{newer.ID}}, t0)
	for _, tc := range []struct{ drv, state, want string }{
		{drv, "", newer.ID},
		{drv, StateQueued, older.ID},
		{drv, StateSucceeded, ""},
		{storePath(8, "other.drv"), "", ""},
	} {
		got := ""
		if b := f.LatestBuild(tc.drv, tc.state); b != nil {
			got = b.ID
		}
		if got != tc.want {
			t.Errorf("LatestBuild(%s, %q) = %q, want %q", tc.drv, tc.state, got, tc.want)
		}
	}
}
