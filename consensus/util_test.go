package consensus

import (
	"bytes"
	"io"
	"testing"

	"github.com/hashicorp/raft"
)

type memSink struct{ bytes.Buffer }

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { return nil }
func (s *memSink) Close() error  { return nil }

func (s *memSink) reader() io.ReadCloser { return readCloser(s.Bytes()) }

func readCloser(b []byte) io.ReadCloser { return io.NopCloser(bytes.NewReader(b)) }

var _ raft.SnapshotSink = (*memSink)(nil)

// snapshotOf takes a snapshot of f into memory.
func snapshotOf(t testing.TB, f *FSM) *memSink {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	return sink
}

func raftAddr(s string) raft.ServerAddress { return raft.ServerAddress(s) }
