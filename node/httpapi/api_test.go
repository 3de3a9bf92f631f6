package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/drvmesh/drvmesh/consensus"
)

// fakeRaft serves a real FSM, applied directly, as the API's raft view and
// applier; it records the commands written through it.
type fakeRaft struct {
	t     *testing.T
	fsm   *consensus.FSM
	mu    sync.Mutex
	index uint64
	cmds  []consensus.Command
	fail  error // what ApplyAndCatchUp answers, when set
}

func newFakeRaft(t *testing.T) *fakeRaft {
	t.Helper()
	f, err := consensus.NewFSM(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &fakeRaft{t: t, fsm: f}
}

func (r *fakeRaft) State() *consensus.FSM                { return r.fsm }
func (r *fakeRaft) Stats() (uint64, uint64, uint64)      { return 1, r.index, r.index }
func (r *fakeRaft) Leader() (string, string)             { return "n1", "n1:1" }
func (r *fakeRaft) Servers() ([]consensus.Server, error) { return nil, nil }
func (r *fakeRaft) CatchUpWithLeader(context.Context) error {
	return nil
}

func (r *fakeRaft) ApplyAndCatchUp(_ context.Context, cmd consensus.Command) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return nil, r.fail
	}
	r.cmds = append(r.cmds, cmd)
	data, err := consensus.EncodeCommand(cmd, time.Now())
	if err != nil {
		return nil, err
	}
	r.index++
	if res, ok := r.fsm.Apply(&raft.Log{Index: r.index, Term: 1, Type: raft.LogCommand, Data: data}).(error); ok {
		return nil, res
	}
	return nil, nil
}

var errNoLeader = errors.New("no leader")

func newTestAPI(t *testing.T) (*API, *fakeRaft) {
	r := newFakeRaft(t)
	api := New(Config{
		Name: "n1", StoreDir: "/nix/store", PublicKey: "mesh-1:key",
		Raft: r, Apply: r, NoLeader: errNoLeader,
		TokenHash: func(tok string) string { return "hash:" + strings.TrimSpace(tok) },
		Join:      http.NotFoundHandler(), Cache: http.NotFoundHandler(), Metrics: http.NotFoundHandler(),
	})
	return api, r
}

func do(t *testing.T, h http.Handler, method, path, token, body string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func TestAPI_Admin(t *testing.T) {
	api, r := newTestAPI(t)
	h := api.Handler()
	cancel := `{"ids":["b1"]}`

	t.Run("refused while the mesh has no settings", func(t *testing.T) {
		if code, body := do(t, h, http.MethodPost, "/api/v1/cancel", "tok", cancel); code != http.StatusServiceUnavailable {
			t.Fatalf("status %d (%s), want 503", code, body)
		}
	})
	if _, err := r.ApplyAndCatchUp(context.Background(), &consensus.SetSettings{Settings: consensus.Settings{AdminTokenHash: "hash:tok"}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, token string }{{"no token", ""}, {"wrong token", "other"}} {
		t.Run(c.name, func(t *testing.T) {
			before := len(r.cmds)
			if code, body := do(t, h, http.MethodPost, "/api/v1/cancel", c.token, cancel); code != http.StatusUnauthorized {
				t.Fatalf("status %d (%s), want 401", code, body)
			}
			if len(r.cmds) != before {
				t.Fatalf("a refused request wrote %T", r.cmds[len(r.cmds)-1])
			}
		})
	}
	t.Run("the admin token writes", func(t *testing.T) {
		id := consensus.NewBuildID(time.Now())
		b := consensus.Build{ID: id, Derivation: "/nix/store/00000000000000000000000000000000-a.drv", System: "x86_64-linux", State: consensus.StateQueued}
		if _, err := r.ApplyAndCatchUp(context.Background(), &consensus.SubmitBuilds{Builds: []consensus.Build{b}}); err != nil {
			t.Fatal(err)
		}
		if code, body := do(t, h, http.MethodPost, "/api/v1/cancel", "tok", `{"ids":["`+id+`"]}`); code != http.StatusOK {
			t.Fatalf("status %d (%s), want 200", code, body)
		}
		if got, err := r.fsm.GetBuild(id); err != nil || got.State != consensus.StateCanceled {
			t.Fatalf("build after cancel: %+v, %v", got, err)
		}
	})
	t.Run("no leader is 503", func(t *testing.T) {
		r.fail = fmt.Errorf("%w: election under way", errNoLeader)
		defer func() { r.fail = nil }()
		if code, body := do(t, h, http.MethodPost, "/api/v1/cancel", "tok", cancel); code != http.StatusServiceUnavailable {
			t.Fatalf("status %d (%s), want 503", code, body)
		}
	})
}
