package node

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/drvmesh/drvmesh/api"
	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/internal/testutil"
)

// steady triples the test timings: six nodes under -race on a busy
// two-core machine otherwise trade leadership too often to test anything.
func steady(c *Config) { c.Scale = 3 }

// closeNode stops a node gracefully and forgets it.
func (m *testMesh) closeNode(name string) {
	m.mu.Lock()
	n := m.nodes[name]
	delete(m.nodes, name)
	m.mu.Unlock()
	if err := n.Close(); err != nil {
		m.t.Errorf("close %s: %v", name, err)
	}
}

// running lists the names of the running nodes.
func (m *testMesh) running() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var names []string
	for name := range m.nodes {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// apiStatus reads GET /api/v1/status from n.
func apiStatus(t *testing.T, n *Node) api.Status {
	t.Helper()
	code, body := httpDo(t, http.MethodGet, apiURL(n, "/api/v1/status"), "", nil)
	var st api.Status
	if code != http.StatusOK {
		t.Fatalf("status from %s = %d %s", n.Name(), code, body)
	}
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("status from %s: %v: %s", n.Name(), err, body)
	}
	return st
}

// apiNodes reads GET /api/v1/nodes from n, by name.
func apiNodes(t *testing.T, n *Node) map[string]api.Node {
	t.Helper()
	code, body := adminGet(t, n, "/api/v1/nodes")
	var list []api.Node
	if code != http.StatusOK {
		t.Fatalf("nodes from %s = %d %s", n.Name(), code, body)
	}
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatalf("nodes from %s: %v: %s", n.Name(), err, body)
	}
	out := map[string]api.Node{}
	for _, nd := range list {
		out[nd.Name] = nd
	}
	return out
}

// raftMembers lists the ids in n's raft configuration.
func raftMembers(n *Node) map[string]bool {
	servers, err := n.raft.Servers()
	if err != nil {
		return nil
	}
	out := map[string]bool{}
	for _, s := range servers {
		out[s.ID] = s.Voter
	}
	return out
}

// leaderNow is the running node that leads, or nil during an election.
func (m *testMesh) leaderNow() *Node {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range m.nodes {
		if n.raft.IsLeader() {
			return n
		}
	}
	return nil
}

// applyEnsure applies cmd through n until it is known to be applied. A
// lost leadership leaves the outcome open: the command is sent again,
// and if that is refused, done tells whether the first attempt took.
func applyEnsure(t *testing.T, n *Node, cmd consensus.Command, done func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lost := false
	for {
		_, err := n.apply(ctx, cmd)
		switch {
		case err == nil:
			return
		case errors.Is(err, raft.ErrLeadershipLost) && ctx.Err() == nil:
			lost = true
		case lost && done():
			return
		default:
			t.Fatalf("apply %T through %s: %v", cmd, n.Name(), err)
		}
	}
}

// submitSure records one build through n, like submitVia, but rides out
// leader changes under load.
func submitSure(t *testing.T, n *Node, i int) string {
	t.Helper()
	b := consensus.Build{ID: consensus.NewBuildID(time.Now()), Derivation: fakeDrv(i), System: "x86_64-linux", State: consensus.StateQueued}
	applyEnsure(t, n, &consensus.SubmitBuilds{Builds: []consensus.Build{b}}, func() bool { return hasBuild(n, b.ID) })
	return b.ID
}

// TestMesh_Membership grows one mesh from 1 to 6 nodes and takes it down
// again: a late joiner catches up from a snapshot, the sixth node stays a
// nonvoter, a crashed builder's build is requeued, and a leader that
// leaves gracefully hands over and is dropped from raft.
func TestMesh_Membership(t *testing.T) {
	m := newTestMesh(t)
	// A short log tail, so a node that joins after a snapshot cannot be
	// sent the log from its start and must install the snapshot.
	snapshots := func(c *Config) { c.TrailingLogs = 4; steady(c) }
	m.bootstrap("n1", snapshots)
	m.join("n2", snapshots)
	m.join("n3", snapshots)
	testutil.Eventually(t, 20*time.Second, "3 voters", func() bool {
		return len(m.node("n1").api.Status().Voters) == 3
	})

	t.Run("late joiner installs a snapshot", func(t *testing.T) {
		var ids []string
		for i := range 24 {
			ids = append(ids, submitSure(t, m.node([]string{"n1", "n2", "n3"}[i%3]), 100+i))
		}
		// Every node snapshots and drops its log head once it has applied
		// the writes, so whichever leads when n4 joins must send a snapshot.
		for _, name := range []string{"n1", "n2", "n3"} {
			n := m.node(name)
			testutil.Eventually(t, 10*time.Second, name+" applied the writes", func() bool {
				for _, id := range ids {
					if !hasBuild(n, id) {
						return false
					}
				}
				return true
			})
			if err := n.raft.Snapshot(); err != nil {
				t.Fatalf("snapshot on %s: %v", name, err)
			}
		}
		late := m.join("n4", snapshots)
		testutil.Eventually(t, 20*time.Second, "late joiner has every earlier write", func() bool {
			for _, id := range ids {
				if !hasBuild(late, id) {
					return false
				}
			}
			return true
		})
		snaps, err := os.ReadDir(filepath.Join(m.cfgs["n4"].DataDir, dirRaft, "snapshots"))
		if err != nil || len(snaps) == 0 {
			t.Fatalf("late joiner's raft dir holds no snapshot: %v %v", snaps, err)
		}
		more := submitSure(t, late, 200)
		testutil.Eventually(t, 10*time.Second, "writes after the snapshot reach every node", func() bool {
			for _, name := range m.running() {
				if !hasBuild(m.node(name), more) {
					return false
				}
			}
			return true
		})
	})

	t.Run("sixth node is a nonvoter", func(t *testing.T) {
		m.join("n5", steady)
		m.join("n6", steady)
		all := []string{"n1", "n2", "n3", "n4", "n5", "n6"}
		for _, name := range all {
			n := m.node(name)
			testutil.Eventually(t, 30*time.Second, "5 voters and 1 nonvoter seen by "+name, func() bool {
				st := apiStatus(t, n)
				got := slices.Sorted(slices.Values(append(slices.Clone(st.Voters), st.Nonvoters...)))
				return len(st.Voters) == 5 && len(st.Nonvoters) == 1 && slices.Equal(got, all)
			})
		}
	})

	t.Run("dead builder's build is requeued", func(t *testing.T) {
		leader := m.waitLeader()
		// A voter that does not lead, so the mesh keeps its leader.
		st := leader.api.Status()
		victim := ""
		for _, v := range st.Voters {
			if v != leader.Name() {
				victim = v
				break
			}
		}
		b := consensus.Build{ID: consensus.NewBuildID(time.Now()), Derivation: fakeDrv(300), System: "x86_64-linux", State: consensus.StateQueued}
		applyEnsure(t, leader, &consensus.SubmitBuilds{Builds: []consensus.Build{b}}, func() bool { return hasBuild(leader, b.ID) })
		buildIs := func(state string) func() bool {
			return func() bool {
				got, err := leader.raft.State().GetBuild(b.ID)
				return err == nil && got.State == state && got.Node == victim
			}
		}
		applyEnsure(t, leader, &consensus.AssignBuilds{Assignments: []consensus.Assignment{{BuildID: b.ID, Node: victim}}}, buildIs(consensus.StateScheduled))
		applyEnsure(t, m.node(victim), &consensus.StartBuild{ID: b.ID, Node: victim}, buildIs(consensus.StateBuilding))
		if got, err := leader.raft.State().GetBuild(b.ID); err != nil || got.State != consensus.StateBuilding || got.Node != victim {
			t.Fatalf("before the crash: %+v, %v", got, err)
		}
		m.kill(victim)
		testutil.Eventually(t, 20*time.Second, "build back in the queue with a lost attempt", func() bool {
			l := m.leaderNow()
			if l == nil {
				return false
			}
			got, err := l.raft.State().GetBuild(b.ID)
			if err != nil || got.State != consensus.StateQueued || got.Node != "" || len(got.Attempts) != 1 {
				return false
			}
			att := got.Attempts[0]
			return att.Node == victim && att.Result == consensus.ResultLost && !att.FinishedAt.IsZero()
		})
	})

	t.Run("leader leaves gracefully", func(t *testing.T) {
		old := m.waitLeader()
		name := old.Name()
		m.closeNode(name)
		leader := m.waitLeader()
		if leader.Name() == name {
			t.Fatal("closed node still leads")
		}
		testutil.Eventually(t, 20*time.Second, name+" removed from raft", func() bool {
			_, in := raftMembers(leader)[name]
			return !in
		})
		for _, other := range m.running() {
			n := m.node(other)
			testutil.Eventually(t, 20*time.Second, other+" lists "+name+" as left", func() bool {
				nd, ok := apiNodes(t, n)[name]
				return ok && nd.Status == "left" && nd.Raft == "none"
			})
		}
		// The mesh still takes writes.
		id := submitSure(t, m.node(m.running()[0]), 400)
		if !hasBuild(m.node(m.running()[0]), id) {
			t.Fatal("write after the leader left is not visible")
		}
	})
}
