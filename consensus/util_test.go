package consensus

import (
	"bytes"
	"io"

	"github.com/hashicorp/raft"
)

type memSink struct{ bytes.Buffer }

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { return nil }
func (s *memSink) Close() error  { return nil }

func (s *memSink) reader() io.ReadCloser { return readCloser(s.Bytes()) }

func readCloser(b []byte) io.ReadCloser { return io.NopCloser(bytes.NewReader(b)) }

var _ raft.SnapshotSink = (*memSink)(nil)

func raftAddr(s string) raft.ServerAddress { return raft.ServerAddress(s) }
