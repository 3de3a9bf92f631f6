package consensus

import (
	"testing"

	"github.com/hashicorp/raft"
)

// FuzzFSM_ApplyEntry feeds arbitrary bytes to the FSM as a committed raft
// entry, as a hostile member that got an entry into the log would. No
// input may stop the replica, and an entry refused with an error must
// change nothing.
func FuzzFSM_ApplyEntry(f *testing.F) {
	for _, cmd := range sampleCommands() {
		data, err := EncodeCommand(cmd, t0)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte{})
	f.Add([]byte{0x7f})
	f.Add([]byte{byte(CmdSubmitBuilds), 0xff, 0xff, 0xff, 0xff})
	fsm, err := NewFSM(f.TempDir(), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { fsm.Close() })
	var index uint64
	f.Fuzz(func(t *testing.T, data []byte) {
		before, err := fsm.Digest()
		if err != nil {
			t.Fatal(err)
		}
		index++
		res := fsm.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data})
		if _, refused := res.(error); !refused {
			return
		}
		after, err := fsm.Digest()
		if err != nil {
			t.Fatal(err)
		}
		if after != before {
			t.Fatalf("a refused entry (%v) changed the state", res)
		}
	})
}
