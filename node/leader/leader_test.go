package leader

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/gossip"
)

// fakeRaft is the leader's raft view over a real FSM, applied directly,
// with a membership the test sets and changes it records.
type fakeRaft struct {
	t     *testing.T
	fsm   *consensus.FSM
	mu    sync.Mutex
	index uint64
	srv   map[string]consensus.Server
	fail  error    // what AddNonvoter answers, when set
	calls []string // "add-nonvoter b", "add-voter b", "remove b"
}

func newFakeRaft(t *testing.T) *fakeRaft {
	t.Helper()
	f, err := consensus.NewFSM(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &fakeRaft{t: t, fsm: f, srv: map[string]consensus.Server{"lead": {ID: "lead", Addr: "lead:1", Voter: true}}}
}

func (r *fakeRaft) IsLeader() bool                         { return true }
func (r *fakeRaft) WatchLeadership() (<-chan bool, func()) { return make(chan bool), func() {} }
func (r *fakeRaft) Subscribe() (<-chan struct{}, func())   { return r.fsm.Subscribe() }
func (r *fakeRaft) State() *consensus.FSM                  { return r.fsm }
func (r *fakeRaft) Nudge()                                 {}
func (r *fakeRaft) Stats() (uint64, uint64, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return 1, r.index, r.index
}

func (r *fakeRaft) Servers() ([]consensus.Server, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []consensus.Server
	for _, s := range r.srv {
		out = append(out, s)
	}
	return out, nil
}

func (r *fakeRaft) change(call, id string, s *consensus.Server) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, call+" "+id)
	if s == nil {
		delete(r.srv, id)
	} else {
		r.srv[id] = *s
	}
	return nil
}

func (r *fakeRaft) AddVoter(id, addr string) error {
	return r.change("add-voter", id, &consensus.Server{ID: id, Addr: addr, Voter: true})
}

func (r *fakeRaft) AddNonvoter(id, addr string) error {
	if r.fail != nil {
		return r.fail
	}
	return r.change("add-nonvoter", id, &consensus.Server{ID: id, Addr: addr})
}

func (r *fakeRaft) RemoveServer(id string) error { return r.change("remove", id, nil) }

func (r *fakeRaft) took() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.calls
	r.calls = nil
	return out
}

// ApplyAndCatchUp applies cmd to the FSM as the next entry.
func (r *fakeRaft) ApplyAndCatchUp(_ context.Context, cmd consensus.Command) ([]string, error) {
	data, err := consensus.EncodeCommand(cmd, time.Now())
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.index++
	l := &raft.Log{Index: r.index, Term: 1, Type: raft.LogCommand, Data: data}
	r.mu.Unlock()
	switch res := r.fsm.Apply(l).(type) {
	case error:
		return nil, res
	case *consensus.RequeueResult:
		return res.IDs, nil
	case *consensus.SubmitResult:
		return res.IDs, nil
	}
	return nil, nil
}

func (r *fakeRaft) mustApply(cmd consensus.Command) []string {
	r.t.Helper()
	ids, err := r.ApplyAndCatchUp(context.Background(), cmd)
	if err != nil {
		r.t.Fatalf("%T: %v", cmd, err)
	}
	return ids
}

// fakeMembers is gossip as the test says it is.
type fakeMembers struct {
	mu sync.Mutex
	m  map[string]gossip.Member
}

func (f *fakeMembers) set(name string, st gossip.Status) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[name] = gossip.Member{Name: name, Status: st}
}

func (f *fakeMembers) Member(name string) (gossip.Member, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.m[name]
	return m, ok
}

func (f *fakeMembers) Members() []gossip.Member {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []gossip.Member
	for _, m := range f.m {
		out = append(out, m)
	}
	return out
}

func (f *fakeMembers) Events() <-chan gossip.Event { return nil }

// appliedIndex answers how far a nonvoter has applied.
type appliedIndex uint64

func (a appliedIndex) RemoteApplied(context.Context, string) (uint64, error) { return uint64(a), nil }

// copies records what the leader asked to copy again.
type copies struct {
	mu  sync.Mutex
	hps []string
}

func (c *copies) ReplicateAsync(hps ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hps = append(c.hps, hps...)
}

func (c *copies) RepairCopies(context.Context, int) (int, error) { return 0, nil }

func TestLeader_Reconcile(t *testing.T) {
	setup := func(t *testing.T, applied uint64) (*Leader, *fakeRaft, *fakeMembers, *bytes.Buffer) {
		r := newFakeRaft(t)
		members := &fakeMembers{m: map[string]gossip.Member{}}
		var logs bytes.Buffer
		l := New(Config{
			Name: "lead", MaxVoters: 3, DeadAfter: time.Hour,
			Raft: r, Apply: r, Members: members, Index: appliedIndex(applied), Copies: &copies{},
			Log: slog.New(slog.NewTextHandler(&logs, nil)),
		})
		for _, name := range []string{"lead", "b"} {
			r.mustApply(&consensus.PutNode{Node: consensus.Node{Name: name, Raft: name + ":1"}})
		}
		members.set("lead", gossip.StatusAlive)
		return l, r, members, &logs
	}
	gone := func() *lost { return &lost{deadSince: map[string]time.Time{}, requeued: map[string]bool{}} }

	t.Run("an alive admitted node joins as a nonvoter, then is promoted once caught up", func(t *testing.T) {
		l, r, members, _ := setup(t, 1<<40)
		members.set("b", gossip.StatusAlive)
		ls := gone()
		l.reconcile(context.Background(), ls)
		if got := r.took(); len(got) != 1 || got[0] != "add-nonvoter b" {
			t.Fatalf("first pass: %v, want [add-nonvoter b]", got)
		}
		l.reconcile(context.Background(), ls)
		if got := r.took(); len(got) != 1 || got[0] != "add-voter b" {
			t.Fatalf("second pass: %v, want [add-voter b]", got)
		}
	})

	t.Run("a nonvoter that lags stays a nonvoter", func(t *testing.T) {
		l, r, members, _ := setup(t, 0)
		r.index = 1000
		members.set("b", gossip.StatusAlive)
		ls := gone()
		l.reconcile(context.Background(), ls)
		l.reconcile(context.Background(), ls)
		if got := r.took(); len(got) != 1 || got[0] != "add-nonvoter b" {
			t.Fatalf("%v, want only [add-nonvoter b]", got)
		}
	})

	t.Run("a dead member loses its builds at once and its vote after DeadAfter", func(t *testing.T) {
		l, r, members, _ := setup(t, 1<<40)
		members.set("b", gossip.StatusAlive)
		ls := gone()
		l.reconcile(context.Background(), ls)
		l.reconcile(context.Background(), ls)
		r.took()
		ids := r.mustApply(&consensus.SubmitBuilds{Builds: []consensus.Build{{Derivation: "/nix/store/00000000000000000000000000000000-a.drv", System: "x86_64-linux"}}})
		r.mustApply(&consensus.AssignBuilds{Assignments: []consensus.Assignment{{BuildID: ids[0], Node: "b"}}})

		members.set("b", gossip.StatusDead)
		l.reconcile(context.Background(), ls)
		b, err := r.fsm.GetBuild(ids[0])
		if err != nil || b.State != consensus.StateQueued {
			t.Fatalf("build of the dead node: %+v, %v; want queued again", b, err)
		}
		if got := r.took(); len(got) != 0 {
			t.Fatalf("raft changed before DeadAfter: %v", got)
		}
		ls.deadSince["b"] = time.Now().Add(-2 * time.Hour)
		l.reconcile(context.Background(), ls)
		if got := r.took(); len(got) != 1 || got[0] != "remove b" {
			t.Fatalf("after DeadAfter: %v, want [remove b]", got)
		}
	})

	t.Run("a raft change that fails is logged with the member", func(t *testing.T) {
		l, r, members, logs := setup(t, 0)
		r.fail = errors.New("not the leader")
		members.set("b", gossip.StatusAlive)
		l.reconcile(context.Background(), gone())
		if !strings.Contains(logs.String(), `msg="add nonvoter" member=b err="not the leader"`) {
			t.Fatalf("no warning for the failed change in:\n%s", logs.String())
		}
	})
}
