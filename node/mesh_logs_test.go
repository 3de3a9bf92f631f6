package node

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/internal/testutil"
	"github.com/drvmesh/drvmesh/node/cluster"
)

// TestMesh_RemoteLogs fetches the log of a build another node ran: over
// the cluster port, whatever addresses that node recorded for itself, so
// a member recording an internal URL makes no node fetch it.
func TestMesh_RemoteLogs(t *testing.T) {
	m := newTestMesh(t)
	n1 := m.bootstrap("n1", steady)
	n2 := m.join("n2", steady)
	testutil.Eventually(t, 20*time.Second, "2 voters", func() bool { return len(n1.api.Status().Voters) == 2 })
	var hits atomic.Int32
	internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = w.Write([]byte("internal secret\n"))
	}))
	defer internal.Close()
	internalAddr := strings.TrimPrefix(internal.URL, "http://")

	id := submitVia(t, n1, 1)
	applyVia(t, m.waitLeader(), &consensus.AssignBuilds{Assignments: []consensus.Assignment{{BuildID: id, Node: "n2"}}})
	applyVia(t, n2, &consensus.StartBuild{ID: id, Node: "n2"})
	logPath := n2.agent.LogPath(id)
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(logPath, []byte("built on n2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fetch := func(t *testing.T) (int, string) {
		t.Helper()
		testutil.Eventually(t, 10*time.Second, "n1 knows the build started on n2", func() bool {
			b, err := n1.raft.State().GetBuild(id)
			return err == nil && b.State == consensus.StateBuilding
		})
		code, body := httpDo(t, http.MethodGet, apiURL(n1, "/api/v1/builds/"+id+"/log"), m.admin, nil)
		return code, string(body)
	}
	// record writes n2's own record with change applied, as n2 may.
	record := func(t *testing.T, change func(*consensus.Node)) {
		t.Helper()
		rec, err := n2.raft.State().Node("n2")
		if err != nil {
			t.Fatal(err)
		}
		change(rec)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := n2.fwd.As(cluster.RoleNode).ApplyAndCatchUp(ctx, &consensus.PutNode{Node: *rec}); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 10*time.Second, "n1 has n2's record", func() bool {
			got, err := n1.raft.State().Node("n2")
			return err == nil && got.HTTP == rec.HTTP && got.Raft == rec.Raft
		})
	}

	t.Run("over the cluster port", func(t *testing.T) {
		if code, body := fetch(t); code != http.StatusOK || body != "built on n2\n" {
			t.Errorf("log of a build on n2 via n1 = %d %q", code, body)
		}
	})
	t.Run("a hostile HTTP address is never fetched", func(t *testing.T) {
		record(t, func(r *consensus.Node) { r.HTTP = internalAddr + "/secret?" })
		if code, body := fetch(t); code != http.StatusOK || body != "built on n2\n" {
			t.Errorf("log via n1 after n2 recorded %q = %d %q", internalAddr+"/secret?", code, body)
		}
	})
	t.Run("a hostile cluster address is refused", func(t *testing.T) {
		own := n2.clusterAdvertise()
		record(t, func(r *consensus.Node) { r.Raft = internalAddr + "/secret?" })
		if code, body := fetch(t); code == http.StatusOK {
			t.Errorf("log via n1 after n2 recorded cluster address %q = %d %q", internalAddr+"/secret?", code, body)
		}
		record(t, func(r *consensus.Node) { r.Raft = own })
	})
	if n := hits.Load(); n != 0 {
		t.Errorf("the internal URL was fetched %d times", n)
	}
}
