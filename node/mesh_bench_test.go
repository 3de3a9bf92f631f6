package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/internal/testutil"
)

// BenchmarkMesh_Submit measures builds accepted per second by a 3-node
// mesh: batches of 1000 builds are written through a follower, which
// forwards each batch to the leader (one raft entry) and waits until it
// has applied it itself. Goal: >= 20,000 builds/s.
func BenchmarkMesh_Submit(b *testing.B) {
	const batch = 1000
	m := newTestMesh(b)
	m.bootstrap("n1", steady)
	m.join("n2", steady)
	m.join("n3", steady)
	testutil.Eventually(b, 30*time.Second, "3 voters", func() bool {
		return len(m.node("n1").api.Status().Voters) == 3
	})
	leader := m.waitLeader()
	var follower *Node
	for _, name := range []string{"n1", "n2", "n3"} {
		if name != leader.Name() {
			follower = m.node(name)
			break
		}
	}
	builds := make([]consensus.Build, batch)
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	accepted, lost := 0, 0
	for i := 0; i < b.N; i++ {
		for j := range builds {
			builds[j] = consensus.Build{Derivation: fakeDrv(i*batch + j), System: "x86_64-linux"}
		}
		ids, err := follower.apply(ctx, &consensus.SubmitBuilds{Builds: builds})
		if errors.Is(err, raft.ErrLeadershipLost) {
			lost++ // outcome unknown: not counted as accepted
			continue
		}
		if err != nil {
			b.Fatalf("submit batch %d through %s: %v", i, follower.Name(), err)
		}
		if len(ids) != batch {
			b.Fatalf("batch %d: %d ids, want %d", i, len(ids), batch)
		}
		accepted += batch
	}
	b.StopTimer()
	b.ReportMetric(float64(accepted)/time.Since(start).Seconds(), "builds/s")
	b.ReportMetric(float64(lost), "lost-batches")
}
