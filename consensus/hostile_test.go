package consensus

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

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
