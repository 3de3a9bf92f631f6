package node

import (
	"context"
	"errors"
	"io"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/drvmesh/drvmesh/builder"
	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/internal/testutil"
)

// holdBuilder accepts every build and holds it until it is canceled, so
// tests see assignments without running a daemon.
type holdBuilder struct {
	mu      sync.Mutex
	started []string
}

func (h *holdBuilder) Name() string { return "nix" }
func (h *holdBuilder) Build(ctx context.Context, req builder.Request, _ io.Writer) (builder.Result, error) {
	h.mu.Lock()
	h.started = append(h.started, req.DrvPath)
	h.mu.Unlock()
	<-ctx.Done()
	return builder.Result{}, builder.ErrCanceled
}
func (h *holdBuilder) OutputNAR(context.Context, string, io.Writer) error {
	return errors.New("holdBuilder builds nothing")
}
func (h *holdBuilder) Close() error { return nil }

// schedMesh is a leader that does not build and two builders.
func schedMesh(t testing.TB, maxJobs int, systems2 []string) *testMesh {
	return schedMeshTimed(t, maxJobs, systems2, true)
}

// schedMeshTimed is schedMesh with test timings (fast) or the LAN
// defaults a real mesh runs with.
func schedMeshTimed(t testing.TB, maxJobs int, systems2 []string, fast bool) *testMesh {
	m := newTestMesh(t)
	m.bootstrap("lead", func(c *Config) { c.Fast = fast })
	m.join("b1", func(c *Config) { c.Builder, c.builder, c.MaxJobs, c.Fast = "nix", &holdBuilder{}, maxJobs, fast })
	m.join("b2", func(c *Config) {
		c.Builder, c.builder, c.MaxJobs, c.Fast = "nix", &holdBuilder{}, maxJobs, fast
		if systems2 != nil {
			c.Systems = systems2
		}
	})
	testutil.Eventually(t, 20*time.Second, "builders gossiped to the leader", func() bool {
		nodes, _ := schedNodes(m.node("lead"), m.node("lead").raft.State())
		return len(nodes) == 2
	})
	// Three voters before a test kills one: with two, a voter that
	// comes back on new ports can never be re-pointed (no quorum to
	// commit its new address).
	testutil.Eventually(t, 30*time.Second, "3 voters", func() bool {
		l := m.waitLeader()
		return len(l.api.Status().Voters) == 3
	})
	return m
}

func submitSystem(t testing.TB, n *Node, i int, system string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b := consensus.Build{ID: consensus.NewBuildID(time.Now()), Derivation: fakeDrv(i), System: system, State: consensus.StateQueued}
	if _, err := n.apply(ctx, &consensus.SubmitBuilds{Builds: []consensus.Build{b}}); err != nil {
		t.Fatalf("submit: %v", err)
	}
	return b.ID
}

func TestNode_Schedule(t *testing.T) {
	m := schedMesh(t, 1, []string{"aarch64-linux"})
	lead := m.node("lead")
	t.Run("system decides the node", func(t *testing.T) {
		x := submitSystem(t, m.node("b2"), 1, hostSystem())
		a := submitSystem(t, m.node("b1"), 2, "aarch64-linux")
		testutil.Eventually(t, 10*time.Second, "both assigned", func() bool {
			bx, _ := lead.raft.State().GetBuild(x)
			ba, _ := lead.raft.State().GetBuild(a)
			return bx != nil && ba != nil && bx.Node != "" && ba.Node != ""
		})
		bx, _ := lead.raft.State().GetBuild(x)
		ba, _ := lead.raft.State().GetBuild(a)
		if bx.Node != "b1" || ba.Node != "b2" {
			t.Fatalf("%s build on %s, aarch64 build on %s; want b1, b2", hostSystem(), bx.Node, ba.Node)
		}
		testutil.Eventually(t, 10*time.Second, "the assigned node starts the build", func() bool {
			b, _ := lead.raft.State().GetBuild(x)
			return b.State == consensus.StateBuilding
		})
	})
	t.Run("no more builds than slots", func(t *testing.T) {
		third := submitSystem(t, lead, 3, hostSystem())
		// b1's only slot is taken: the build stays queued while the
		// mesh goes on applying other commands.
		for i := 0; i < 5; i++ {
			submitSystem(t, lead, 100+i, "riscv64-linux")
		}
		b, _ := lead.raft.State().GetBuild(third)
		if b.State != consensus.StateQueued {
			t.Fatalf("third build %s on %s with no free slot", b.State, b.Node)
		}
	})
	t.Run("cancel frees the slot", func(t *testing.T) {
		bs, _ := lead.raft.State().ListBuilds(consensus.BuildFilter{State: consensus.StateBuilding})
		var ids []string
		for _, b := range bs {
			if b.Node == "b1" {
				ids = append(ids, b.ID)
			}
		}
		if len(ids) != 1 {
			t.Fatalf("b1 runs %d builds, want 1", len(ids))
		}
		if _, err := lead.apply(context.Background(), &consensus.CancelBuilds{IDs: ids}); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 10*time.Second, "the queued build takes the freed slot", func() bool {
			q, _ := lead.raft.State().ListBuilds(consensus.BuildFilter{State: consensus.StateQueued})
			for _, b := range q {
				if b.System == hostSystem() {
					return false
				}
			}
			return true
		})
	})
}

// BenchmarkNode_SubmitToAssigned measures, on an idle 3-node mesh with
// the default LAN timings, the time from a submission accepted through a
// follower until that follower's state shows the build assigned.
func BenchmarkNode_SubmitToAssigned(b *testing.B) {
	m := schedMeshTimed(b, 1<<20, nil, false)
	via := m.node("b2")
	changes, unsub := via.raft.Subscribe()
	defer unsub()
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		id := submitSystem(b, via, 1000+i, hostSystem())
		for {
			bd, err := via.raft.State().GetBuild(id)
			if err == nil && bd.State != consensus.StateQueued {
				break
			}
			select {
			case <-changes:
			case <-time.After(time.Millisecond):
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

func TestNode_RestartHandsBackStaleBuilds(t *testing.T) {
	m := schedMesh(t, 1, nil)
	lead := m.node("lead")
	id := submitSystem(t, lead, 1, hostSystem())
	var on string
	testutil.Eventually(t, 10*time.Second, "the build runs", func() bool {
		b, _ := lead.raft.State().GetBuild(id)
		on = b.Node
		return b.State == consensus.StateBuilding
	})
	m.kill(on)
	m.restart(on)
	testutil.Eventually(t, 20*time.Second, "the build runs again after the restart", func() bool {
		b, _ := lead.raft.State().GetBuild(id)
		return b.State == consensus.StateBuilding && len(b.Attempts) >= 2 && b.Attempts[0].Result == consensus.ResultLost
	})
}
