package consensus

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// logCounter is a slog handler that counts records by level.
type logCounter struct {
	mu     sync.Mutex
	levels map[slog.Level]int
}

func (h *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *logCounter) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.levels[r.Level]++
	h.mu.Unlock()
	return nil
}
func (h *logCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logCounter) WithGroup(string) slog.Handler      { return h }

func (h *logCounter) count(l slog.Level) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.levels[l]
}

func TestFSM_ApplyBatch_Undecodable(t *testing.T) {
	good1 := &SubmitBuilds{Builds: []Build{{ID: NewBuildID(t0), Derivation: storePath(1, "a.drv"), System: "s"}}}
	good2 := &SubmitBuilds{Builds: []Build{{ID: NewBuildID(t0.Add(1)), Derivation: storePath(2, "b.drv"), System: "s"}}}
	enc := func(cmd Command) []byte {
		data, err := EncodeCommand(cmd, t0)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	bad := map[string][]byte{
		"unknown type":        append([]byte{100}, make([]byte, 8)...),
		"short entry":         {byte(CmdPutNode), 0, 0},
		"payload not JSON":    append(enc(&PutNode{})[:9], "nope"...),
		"JSON of wrong shape": append(enc(&PutNode{})[:9], `{"node":7}`...),
		"truncated binary":    enc(good1)[:20],
	}
	for name, data := range bad {
		t.Run(name, func(t *testing.T) {
			logs := &logCounter{levels: map[slog.Level]int{}}
			f, err := NewFSM(t.TempDir(), slog.New(logs))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			// A failing command in the batch makes ApplyBatch replay it
			// command by command: the bad entry is still logged once.
			failing := &CancelBuilds{IDs: []string{NewBuildID(t0)}}
			batch := []*raft.Log{
				{Index: 1, Type: raft.LogCommand, Data: enc(good1)},
				{Index: 2, Type: raft.LogCommand, Data: data},
				{Index: 3, Type: raft.LogCommand, Data: enc(failing)},
				{Index: 4, Type: raft.LogCommand, Data: enc(good2)},
			}
			var resp []any
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("panic: %v", r)
					}
				}()
				resp = f.ApplyBatch(batch)
			}()
			err, _ = resp[1].(error)
			if !errors.Is(err, ErrBadCommand) || !strings.Contains(err.Error(), "log 2") {
				t.Fatalf("bad entry: %v", resp[1])
			}
			if _, ok := resp[0].(*SubmitResult); !ok {
				t.Fatalf("entry before it: %v", resp[0])
			}
			if _, ok := resp[3].(*SubmitResult); !ok {
				t.Fatalf("entry after it: %v", resp[3])
			}
			if got := f.RejectedEntries(); got != 1 {
				t.Fatalf("RejectedEntries = %d", got)
			}
			if got := logs.count(slog.LevelError); got != 1 {
				t.Fatalf("%d ERROR records", got)
			}

			// Same state as a replica that never saw the bad entry.
			ref := newTestFSM(t)
			ref.ApplyBatch([]*raft.Log{batch[0], batch[2], batch[3]})
			var got bytes.Buffer
			if err := f.view(func(tx *bolt.Tx) error { return writeSnapshot(tx, &got) }); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), ref.dump()) {
				t.Fatal("state differs from a replica without the bad entry")
			}
		})
	}
}

func TestFSM_Apply_OversizedRecords(t *testing.T) {
	huge := strings.Repeat("x", 40_000) // over bbolt's 32 KiB key limit
	for name, cmd := range map[string]Command{
		"node name":    &PutNode{Node: Node{Name: huge}},
		"tag":          &SubmitBuilds{Builds: []Build{{Derivation: storePath(1, "a.drv"), System: "s", Tags: map[string]string{"k": huge}}}},
		"waiting path": &SubmitBuilds{Builds: []Build{{Derivation: storePath(1, "a.drv"), System: "s", WaitingFor: []string{"/nix/store/" + hashOf(5) + "-" + huge}}}},
	} {
		t.Run(name, func(t *testing.T) {
			f := newTestFSM(t)
			f.submit(9, nil)
			before := f.dump()
			res := f.apply(cmd, t0)
			if err, _ := res.(error); !errors.Is(err, ErrBadCommand) {
				t.Fatalf("result %v", res)
			}
			if !bytes.Equal(f.dump(), before) {
				t.Fatal("state changed")
			}
			f.submit(10, nil) // the replica goes on
		})
	}
}

func TestFSM_Apply_Mismatch(t *testing.T) {
	path := storePath(1001, "pkg")
	first := NarInfo{StorePath: path, NarHash: "sha256:first", NarSize: 100, Sigs: []string{"a:1"}}
	other := NarInfo{StorePath: path, NarHash: "sha256:other", NarSize: 101, Sigs: []string{"b:2"}}

	t.Run("a different NarHash is kept aside, the record and holders stay", func(t *testing.T) {
		f := newTestFSM(t)
		f.mustApply(&PutNarInfos{Holder: "n1", NarInfos: []NarInfo{first}}, t0)
		before, _ := f.NarInfoByHash(hashOf(1001))
		// Another record in the same command still applies.
		f.mustApply(&PutNarInfos{Holder: "n2", NarInfos: []NarInfo{other, {StorePath: storePath(7, "x"), NarHash: "sha256:x", NarSize: 1}}}, t0.Add(time.Minute))
		after, _ := f.NarInfoByHash(hashOf(1001))
		if !reflect.DeepEqual(before, after) {
			t.Fatalf("record changed: %+v", after)
		}
		if _, err := f.NarInfoByHash(hashOf(7)); err != nil {
			t.Fatalf("other record of the command: %v", err)
		}
		m, err := f.Mismatch(path)
		if err != nil {
			t.Fatal(err)
		}
		want := &Mismatch{Path: path, Results: []MismatchResult{
			{Node: "n1", NarHash: "sha256:first", NarSize: 100},
			{Node: "n2", NarHash: "sha256:other", NarSize: 101, At: t0.Add(time.Minute)},
		}}
		if !reflect.DeepEqual(m, want) {
			t.Fatalf("mismatch %+v\nwant %+v", m, want)
		}
		// A retry changes nothing; an agreeing report merges holders and
		// is listed; a third hash is added.
		f.mustApply(&PutNarInfos{Holder: "n2", NarInfos: []NarInfo{other}}, t0.Add(2*time.Minute))
		again, _ := f.Mismatch(path)
		rec, _ := f.NarInfoByHash(hashOf(1001))
		if !reflect.DeepEqual(again, m) || !reflect.DeepEqual(rec, before) {
			t.Fatalf("repeated report changed the state: %+v", again)
		}
		f.mustApply(&PutNarInfos{Holder: "n3", NarInfos: []NarInfo{first}}, t0.Add(3*time.Minute))
		f.mustApply(&PutNarInfos{Holder: "n4", NarInfos: []NarInfo{{StorePath: path, NarHash: "sha256:third", NarSize: 5}}}, t0.Add(4*time.Minute))
		rec, _ = f.NarInfoByHash(hashOf(1001))
		m, _ = f.Mismatch(path)
		if rec.NarHash != "sha256:first" || !slices.Equal(rec.Holders, []string{"n1", "n3"}) || len(m.Results) != 4 ||
			m.Results[2].Node != "n3" || m.Results[3].NarHash != "sha256:third" {
			t.Fatalf("record %+v\nmismatch %+v", rec, m)
		}
		all, err := f.Mismatches()
		if err != nil || len(all) != 1 || !reflect.DeepEqual(all[0], *m) {
			t.Fatalf("Mismatches = %+v, %v", all, err)
		}
		if _, err := f.Mismatch(storePath(7, "x")); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Mismatch of an agreed path: %v", err)
		}
		// No build was named, so no event.
		if got := eventTypes(t, f); len(got) != 0 {
			t.Fatalf("events %v", got)
		}
	})
	t.Run("same NarHash merges holders without a mismatch", func(t *testing.T) {
		f := newTestFSM(t)
		f.mustApply(&PutNarInfos{Holder: "n1", NarInfos: []NarInfo{first}}, t0)
		f.mustApply(&PutNarInfos{Holder: "n2", NarInfos: []NarInfo{first}}, t0)
		rec, _ := f.NarInfoByHash(hashOf(1001))
		if !slices.Equal(rec.Holders, []string{"n1", "n2"}) {
			t.Fatalf("holders %v", rec.Holders)
		}
		if all, _ := f.Mismatches(); len(all) != 0 {
			t.Fatalf("mismatches %+v", all)
		}
	})
	t.Run("a path under another name is refused", func(t *testing.T) {
		f := newTestFSM(t)
		f.mustApply(&PutNarInfos{Holder: "n1", NarInfos: []NarInfo{first}}, t0)
		before := f.dump()
		evil := first
		evil.StorePath = "/nix/store/" + hashOf(1001) + "-evil"
		if err, _ := f.apply(&PutNarInfos{Holder: "n2", NarInfos: []NarInfo{evil}}, t0).(error); !errors.Is(err, ErrBadCommand) {
			t.Fatalf("err = %v", err)
		}
		if !bytes.Equal(before, f.dump()) {
			t.Fatal("state changed")
		}
	})
	t.Run("a finishing build with another nar succeeds with the recorded one", func(t *testing.T) {
		f := newTestFSM(t)
		f.mustApply(&PutNarInfos{Holder: "n1", NarInfos: []NarInfo{first}}, t0)
		id := f.running(1, "n2")
		fin := &FinishOutputs{
			NarInfos: PutNarInfos{Holder: "n2", NarInfos: []NarInfo{other}},
			Finish: FinishBuild{ID: id, Node: "n2", Success: true,
				Outputs: []Output{{Name: "out", Path: path, NarHash: other.NarHash, NarSize: other.NarSize}}},
		}
		f.mustApply(fin, t0.Add(time.Hour))
		b := f.build(id)
		if b.State != StateSucceeded || b.Outputs[0].NarHash != first.NarHash {
			t.Fatalf("build %+v", b)
		}
		m, err := f.Mismatch(path)
		if err != nil || m.Derivation != storePath(1, "pkg.drv") || m.Output != "out" || len(m.Results) != 2 {
			t.Fatalf("mismatch %+v, %v", m, err)
		}
		evs, _ := f.PendingEvents(0)
		last := evs[len(evs)-1]
		if last.Type != EventBuildMismatch || last.BuildID != id || !last.Time.Equal(t0.Add(time.Hour)) {
			t.Fatalf("events %+v", evs)
		}
		// A second build of it reporting the same other nar adds no event.
		id2 := f.running(2, "n3")
		f.mustApply(&PutNarInfos{Holder: "n1", NarInfos: []NarInfo{{StorePath: storePath(1002, "pkg"), NarHash: "sha256:p", NarSize: 9}}}, t0)
		n := len(eventTypes(t, f))
		fin2 := &FinishOutputs{
			NarInfos: PutNarInfos{Holder: "n3", NarInfos: []NarInfo{other}},
			Finish:   FinishBuild{ID: id2, Node: "n3", Success: true, Outputs: []Output{{Name: "out", Path: storePath(1002, "pkg")}}},
		}
		f.mustApply(fin2, t0.Add(2*time.Hour))
		if got := eventTypes(t, f); len(got) != n+1 || got[n] != EventBuildSucceeded {
			t.Fatalf("events %v", got[n:])
		}
	})
	t.Run("snapshot and restore carry mismatches", func(t *testing.T) {
		f := newTestFSM(t)
		f.mustApply(&PutNarInfos{Holder: "n1", NarInfos: []NarInfo{first}}, t0)
		f.mustApply(&PutNarInfos{Holder: "n2", NarInfos: []NarInfo{other}}, t0)
		want, _ := f.Mismatches()
		g := newTestFSM(t)
		if err := g.Restore(snapshotOf(t, f.FSM).reader()); err != nil {
			t.Fatal(err)
		}
		got, err := g.Mismatches()
		if err != nil || len(got) != 1 || !reflect.DeepEqual(got, want) {
			t.Fatalf("restored %+v, %v", got, err)
		}
	})
}

func TestFSM_Apply_DeclaredOutputs(t *testing.T) {
	// f.running(1, ...) submits storePath(1, "pkg.drv") declaring
	// out = storePath(1001, "pkg").
	nar := func(i int, name string) NarInfo {
		return NarInfo{StorePath: storePath(i, name), NarHash: "sha256:" + hashOf(i), NarSize: 10}
	}
	for name, outs := range map[string][]Output{
		"undeclared name":   {{Name: "out", Path: storePath(1001, "pkg")}, {Name: "dev", Path: storePath(1003, "pkg-dev")}},
		"other path":        {{Name: "out", Path: storePath(1003, "pkg-dev")}},
		"declared missing":  {{Name: "lib", Path: storePath(1003, "pkg-dev")}},
		"name twice":        {{Name: "out", Path: storePath(1001, "pkg")}, {Name: "out", Path: storePath(1001, "pkg")}},
		"no outputs at all": nil,
	} {
		t.Run(name+" is refused", func(t *testing.T) {
			f := newTestFSM(t)
			id := f.running(1, "n1")
			f.mustApply(&PutNarInfos{Holder: "n1", NarInfos: []NarInfo{nar(1001, "pkg"), nar(1003, "pkg-dev")}}, t0)
			before := f.dump()
			for _, cmd := range []Command{
				&FinishBuild{ID: id, Node: "n1", Success: true, Outputs: outs},
				&FinishOutputs{NarInfos: PutNarInfos{Holder: "n1", NarInfos: []NarInfo{nar(1005, "new")}},
					Finish: FinishBuild{ID: id, Node: "n1", Success: true, Outputs: outs}},
			} {
				if err, _ := f.apply(cmd, t0).(error); !errors.Is(err, ErrBadCommand) {
					t.Fatalf("%T: %v", cmd, err)
				}
				if !bytes.Equal(before, f.dump()) {
					t.Fatalf("%T changed the state", cmd)
				}
			}
		})
	}
	t.Run("a declared empty path matches any", func(t *testing.T) {
		f := newTestFSM(t)
		drv := storePath(3, "ca.drv")
		res := f.mustApply(&SubmitBuilds{
			Builds: []Build{{Derivation: drv, System: "s"}},
			Drvs:   []Drv{{Path: drv, System: "s", Outputs: map[string]string{"out": ""}}},
		}, t0).(*SubmitResult)
		id := res.IDs[0]
		f.mustApply(&AssignBuilds{Assignments: []Assignment{{BuildID: id, Node: "n1"}}}, t0)
		f.mustApply(&FinishOutputs{NarInfos: PutNarInfos{Holder: "n1", NarInfos: []NarInfo{nar(1009, "ca")}},
			Finish: FinishBuild{ID: id, Node: "n1", Success: true, Outputs: []Output{{Name: "out", Path: storePath(1009, "ca")}}}}, t0)
	})
	t.Run("without a derivation record any outputs do", func(t *testing.T) {
		f := newTestFSM(t)
		drv := storePath(4, "old.drv")
		id := f.mustApply(&SubmitBuilds{Builds: []Build{{Derivation: drv, System: "s"}}}, t0).(*SubmitResult).IDs[0]
		f.mustApply(&AssignBuilds{Assignments: []Assignment{{BuildID: id, Node: "n1"}}}, t0)
		f.mustApply(&FinishOutputs{NarInfos: PutNarInfos{Holder: "n1", NarInfos: []NarInfo{nar(1010, "any")}},
			Finish: FinishBuild{ID: id, Node: "n1", Success: true, Outputs: []Output{{Name: "whatever", Path: storePath(1010, "any")}}}}, t0)
	})
}
