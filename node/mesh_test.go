package node

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/drvmesh/drvmesh/api"
	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/internal/testutil"
)

// fakeDrv is a well-formed .drv path for state-only tests.
func fakeDrv(i int) string {
	return fmt.Sprintf("/nix/store/%s-t%d.drv", fmt.Sprintf("%032d", i)[:32], i)
}

// submitVia records one build through node n's write path and returns
// its id once n has applied it.
func submitVia(t *testing.T, n *Node, i int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b := consensus.Build{ID: consensus.NewBuildID(time.Now()), Derivation: fakeDrv(i), System: "x86_64-linux", State: consensus.StateQueued}
	if _, err := n.apply(ctx, &consensus.SubmitBuilds{Builds: []consensus.Build{b}}); err != nil {
		t.Fatalf("submit through %s: %v", n.Name(), err)
	}
	return b.ID
}

func hasBuild(n *Node, id string) bool {
	_, err := n.raft.State().GetBuild(id)
	return err == nil
}

func TestMesh_JoinWriteFailover(t *testing.T) {
	m := newTestMesh(t)
	m.bootstrap("n1", nil)
	m.join("n2", nil)
	m.join("n3", nil)

	t.Run("three voters", func(t *testing.T) {
		testutil.Eventually(t, 20*time.Second, "3 voters", func() bool {
			st := m.node("n1").api.Status()
			return len(st.Voters) == 3
		})
		code, body := adminGet(t, m.node("n3"), "/api/v1/nodes")
		var nodes []api.Node
		if code != 200 || json.Unmarshal(body, &nodes) != nil || len(nodes) != 3 {
			t.Fatalf("nodes = %d %s", code, body)
		}
		for _, nd := range nodes {
			if nd.Status != "alive" || (nd.Raft != "leader" && nd.Raft != "voter") {
				t.Errorf("node %+v", nd)
			}
		}
	})

	var ids []string
	t.Run("writes through every node", func(t *testing.T) {
		for i, name := range []string{"n1", "n2", "n3"} {
			ids = append(ids, submitVia(t, m.node(name), i+1))
		}
		for _, name := range []string{"n1", "n2", "n3"} {
			n := m.node(name)
			testutil.Eventually(t, 10*time.Second, "writes replicated to "+name, func() bool {
				for _, id := range ids {
					if !hasBuild(n, id) {
						return false
					}
				}
				return true
			})
		}
	})

	t.Run("leader killed", func(t *testing.T) {
		old := m.waitLeader()
		m.kill(old.Name())
		leader := m.waitLeader()
		if leader.Name() == old.Name() {
			t.Fatal("dead node still leads")
		}
		// Two voters of three elect under -race on busy cores: ride out a
		// lost leadership as a client would.
		ids = append(ids, submitSure(t, leader, 10))
		for _, id := range ids {
			if !hasBuild(leader, id) {
				t.Errorf("acknowledged build %s lost after failover", id)
			}
		}
		restarted := m.restart(old.Name())
		testutil.Eventually(t, 20*time.Second, "restarted node catches up", func() bool {
			for _, id := range ids {
				if !hasBuild(restarted, id) {
					return false
				}
			}
			return true
		})
	})
}
