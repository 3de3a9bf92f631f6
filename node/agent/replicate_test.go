package agent

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/drvmesh/drvmesh/consensus"
)

// stateOnly is a Raft that is only a state.
type stateOnly struct{ fsm *consensus.FSM }

func (s stateOnly) State() *consensus.FSM                { return s.fsm }
func (s stateOnly) Subscribe() (<-chan struct{}, func()) { return nil, func() {} }

// newState is a state with cmds applied.
func newState(t *testing.T, cmds ...consensus.Command) *consensus.FSM {
	t.Helper()
	f, err := consensus.NewFSM(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	for i, cmd := range cmds {
		data, err := consensus.EncodeCommand(cmd, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if res := f.Apply(&raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: data}); res != nil {
			if err, ok := res.(error); ok {
				t.Fatal(err)
			}
		}
	}
	return f
}

func TestKeeper_AskReplicate(t *testing.T) {
	t.Run("a node that does not answer is given up on soon", func(t *testing.T) {
		// A paused node: it takes the connection and never answers.
		stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body) // then a closed connection ends r's context
			<-r.Context().Done()
		}))
		defer stuck.Close()
		defer stuck.CloseClientConnections()
		hash := strings.Repeat("a", 32)
		st := newState(t,
			&consensus.PutNode{Node: consensus.Node{Name: "paused", Raft: strings.TrimPrefix(stuck.URL, "http://")}},
			&consensus.PutNarInfos{Holder: "me", NarInfos: []consensus.NarInfo{{StorePath: "/nix/store/" + hash + "-x", NarHash: "sha256:" + strings.Repeat("0", 52), NarSize: 10}}},
		)
		k := NewKeeper(context.Background(), Config{
			Name: "me", RPC: &http.Client{Timeout: time.Second}, CopyWait: 300 * time.Millisecond,
			Raft: stateOnly{st}, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- k.AskReplicate(context.Background(), "paused", hash) }()
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("a node that never answered copied the nar")
			}
			if el := time.Since(start); el > 5*time.Second {
				t.Fatalf("gave up after %v", el)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the copy request still waits for a node that does not answer")
		}
	})
}
