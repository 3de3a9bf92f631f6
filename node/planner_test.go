package node

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/internal/testutil"
	"github.com/drvmesh/drvmesh/scheduler"
)

// outPath is the "out" output of fakeDrv(i).
func outPath(i int) string { return fmt.Sprintf("/nix/store/%032d-o%d", 700000+i, i) }

func outHash(i int) string { return fmt.Sprintf("%032d", 700000+i) }

// drvRecord is the record of fakeDrv(i) whose inputs are the "out"
// outputs of fakeDrv(in) for each in.
func drvRecord(i int, inputs ...int) consensus.Drv {
	d := consensus.Drv{Path: fakeDrv(i), System: hostSystem(), Outputs: map[string]string{"out": outPath(i)}, InputDrvs: map[string][]string{}}
	for _, in := range inputs {
		d.InputDrvs[fakeDrv(in)] = []string{"out"}
	}
	return d
}

// mustApply commits cmd through n and fails the test on an error.
func mustApply(t testing.TB, n *Node, cmd consensus.Command) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ids, err := n.apply(ctx, cmd)
	if err != nil {
		t.Fatalf("%T: %v", cmd, err)
	}
	return ids
}

// submitGraph records builds and drv records in one entry and returns
// the build ids in order.
func submitGraph(t testing.TB, n *Node, builds []consensus.Build, drvs []consensus.Drv) []string {
	t.Helper()
	return mustApply(t, n, &consensus.SubmitBuilds{Builds: builds, Drvs: drvs})
}

func graphBuild(i, prio int) consensus.Build {
	return consensus.Build{Derivation: fakeDrv(i), System: hostSystem(), Priority: prio, Retries: 2}
}

func putOutput(t testing.TB, n *Node, i int, holder string, size int64) {
	t.Helper()
	mustApply(t, n, &consensus.PutNarInfos{Holder: holder, NarInfos: []consensus.NarInfo{{
		StorePath: outPath(i), NarHash: "sha256:" + outHash(i), NarSize: size,
	}}})
}

// putDrvs records the .drv files of fakeDrv(i) for each i as held by
// holder, as a submission that uploaded them would: a node that gets one
// of these builds then finds its inputs in the mesh and hands the build
// to its builder.
func putDrvs(t testing.TB, n *Node, holder string, idx ...int) {
	t.Helper()
	var recs []consensus.NarInfo
	for _, i := range idx {
		recs = append(recs, consensus.NarInfo{StorePath: fakeDrv(i), NarHash: "sha256:" + fmt.Sprintf("%032d", 800000+i), NarSize: 100})
	}
	mustApply(t, n, &consensus.PutNarInfos{Holder: holder, NarInfos: recs})
}

// leading is the node whose leader loop holds a planner, or nil.
func (m *testMesh) leading() *Node {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range m.nodes {
		if n.raft.IsLeader() && n.leader.Planner() != nil {
			return n
		}
	}
	return nil
}

// checkPlans waits until the leader's planner and scheduler.Schedule over
// a full read agree, and requires at least minWant assignments from the
// reference (with extra slots), so that the comparison means something.
func checkPlans(t *testing.T, m *testMesh, minWant int) scheduler.Plan {
	t.Helper()
	var got, want scheduler.Plan
	mismatches := 0
	testutil.Eventually(t, 20*time.Second, "the leader's planner plans as Schedule does over a full read", func() bool {
		l := m.leading()
		if l == nil {
			return false
		}
		var ok bool
		got, want, ok = planCheck(l, 8)
		if ok && !slices.Equal(got.Assignments, want.Assignments) {
			mismatches++
			if mismatches <= 3 {
				t.Logf("planner %v\nschedule %v", got.Assignments, want.Assignments)
			}
			return false
		}
		return ok
	})
	if len(want.Assignments) < minWant {
		t.Fatalf("reference plan has %d assignments, want at least %d: %v", len(want.Assignments), minWant, want.Assignments)
	}
	return want
}

// buildOn returns a build as n's state has it.
func buildOn(t testing.TB, n *Node, id string) *consensus.Build {
	t.Helper()
	b, err := n.raft.State().GetBuild(id)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNode_PlannerMatchesSchedule(t *testing.T) {
	m := schedMesh(t, 1, nil)
	lead := m.node("lead")
	testutil.Eventually(t, 30*time.Second, "3 voters", func() bool { return len(lead.api.Status().Voters) == 3 })
	// X (20) is built already: its output is on b2. Y (21) is unknown.
	putOutput(t, m.node("b2"), 20, "b2", 50_000)
	putDrvs(t, lead, "lead", 1, 2, 3, 4, 5, 6, 7, 9, 20)
	far := time.Now().Add(time.Hour)
	defBuild := graphBuild(9, 50)
	defBuild.DeferUntil = far
	ids := submitGraph(t, lead, []consensus.Build{
		graphBuild(1, 5),  // A
		graphBuild(2, 0),  // B ← A
		graphBuild(3, 0),  // C ← A, B
		graphBuild(4, 1),  // D ← X (held by b2)
		graphBuild(5, 2),  // E ← Y (no record)
		graphBuild(6, -1), // F
		graphBuild(7, 3),  // G ← X, A
		defBuild,          // H, deferred
	}, []consensus.Drv{
		drvRecord(1), drvRecord(2, 1), drvRecord(3, 1, 2), drvRecord(4, 20), drvRecord(5, 21),
		drvRecord(6), drvRecord(7, 20, 1), drvRecord(9), drvRecord(20),
	})
	a, b, c, f := ids[0], ids[1], ids[2], ids[5]

	t.Run("submissions with an input graph", func(t *testing.T) {
		testutil.Eventually(t, 10*time.Second, "two builds assigned", func() bool {
			bs, _ := lead.raft.State().ListBuilds(consensus.BuildFilter{State: consensus.StateQueued})
			return len(bs) == len(ids)-2
		})
		if lp := lead.leader.Planner(); lp != nil {
			wake := lp.NextWake()
			if !wake.Equal(far) {
				t.Fatalf("planner wakes at %v, want the deferred build's %v", wake, far)
			}
		}
		checkPlans(t, m, 2)
	})
	t.Run("a finished input releases its dependents", func(t *testing.T) {
		ba := buildOn(t, lead, a)
		if ba.Node == "" {
			t.Fatalf("A (priority 5) is %s on no node", ba.State)
		}
		putOutput(t, m.node(ba.Node), 1, ba.Node, 70_000)
		mustApply(t, m.node(ba.Node), &consensus.FinishBuild{ID: a, Node: ba.Node, Success: true, Outputs: []consensus.Output{{Name: "out", Path: outPath(1)}}})
		want := checkPlans(t, m, 2)
		if !slices.ContainsFunc(want.Assignments, func(x scheduler.Assignment) bool { return x.Build == b }) {
			t.Fatalf("B is not ready once A succeeded: %v", want.Assignments)
		}
	})
	t.Run("a failure avoids the node and cancels free slots", func(t *testing.T) {
		var failed string
		for _, id := range ids {
			if bd := buildOn(t, lead, id); !consensus.Finished(bd.State) && bd.Node != "" {
				mustApply(t, m.node(bd.Node), &consensus.FinishBuild{ID: id, Node: bd.Node, Error: "boom"})
				failed = id
				break
			}
		}
		if failed == "" {
			t.Fatal("no build runs")
		}
		testutil.Eventually(t, 10*time.Second, "the failed build is requeued with its failed node", func() bool {
			return len(buildOn(t, lead, failed).FailedNodes) == 1
		})
		checkPlans(t, m, 1)
		mustApply(t, lead, &consensus.CancelBuilds{IDs: []string{c, f}})
		checkPlans(t, m, 1)
	})
	t.Run("nar holders move locality", func(t *testing.T) {
		mustApply(t, m.node("b1"), &consensus.SetNarHolder{Hash: outHash(20), Node: "b1", Present: true})
		mustApply(t, m.node("b2"), &consensus.SetNarHolder{Hash: outHash(20), Node: "b2", Present: false})
		checkPlans(t, m, 1)
	})
	t.Run("a settings change rebuilds the planner", func(t *testing.T) {
		mustApply(t, lead, &consensus.SetSettings{Settings: consensus.Settings{Strategy: string(scheduler.StrategyBasic)}})
		checkPlans(t, m, 1)
	})
	t.Run("a new leader plans alike", func(t *testing.T) {
		var old *Node
		testutil.Eventually(t, 20*time.Second, "a leader with a planner", func() bool {
			old = m.leading()
			return old != nil
		})
		if err := old.raft.LeadershipTransfer(); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 20*time.Second, "another node leads with a planner", func() bool {
			l := m.leading()
			return l != nil && l != old
		})
		testutil.Eventually(t, 10*time.Second, "the old leader drops its planner", func() bool {
			return old.leader.Planner() == nil
		})
		nl := m.leading()
		more := []consensus.Build{graphBuild(10, 4), graphBuild(11, 0)}
		submitGraph(t, nl, more, []consensus.Drv{drvRecord(10, 4), drvRecord(11, 20)})
		checkPlans(t, m, 2)
	})
}

// BenchmarkNode_LeaderRound measures the leader's planning round with a
// large queue: 20,000 builds (each with up to 3 inputs among earlier
// ones) wait in a 1-node mesh whose only slot is held, and each iteration
// submits one more build and waits until the planner holds it. round-ms
// is the leader's mean time per round (apply the changes, plan) during
// the iterations; full-read-ms is what one round costs when it reads the
// whole state and calls scheduler.Schedule, as the leader did before it
// kept a Planner; term-start-ms is reading the state into a new Planner,
// once per term.
func BenchmarkNode_LeaderRound(b *testing.B) {
	const queued, batch = 20_000, 2000
	m := newTestMesh(b)
	solo := m.bootstrap("solo", func(c *Config) { c.Builder, c.builder, c.MaxJobs = "nix", &holdBuilder{}, 1 })
	testutil.Eventually(b, 20*time.Second, "the node gossips its slot", func() bool {
		nodes, _ := schedNodes(solo, solo.raft.State())
		return len(nodes) == 1
	})
	var last []string
	for i := 0; i < queued; i += batch {
		var builds []consensus.Build
		var drvs []consensus.Drv
		for j := i; j < i+batch; j++ {
			var ins []int
			for k := 1; k <= 3 && j >= k*7; k++ {
				ins = append(ins, j-k*7)
			}
			builds = append(builds, consensus.Build{Derivation: fakeDrv(j), System: hostSystem()})
			drvs = append(drvs, drvRecord(j, ins...))
		}
		last = mustApply(b, solo, &consensus.SubmitBuilds{Builds: builds, Drvs: drvs})
	}
	lp := solo.leader.Planner()
	has := lp.Has
	// The last build depends on queued builds: it stays queued.
	testutil.Eventually(b, 60*time.Second, "the planner holds the queue", func() bool { return has(last[len(last)-1]) })
	stats := lp.Stats()
	start := time.Now()
	ref, cfg := referenceState(solo, start)
	scheduler.Schedule(ref, cfg, start)
	full := time.Since(start)

	rounds0, busy0 := lp.Rounds()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		j := queued + i
		ids := mustApply(b, solo, &consensus.SubmitBuilds{
			Builds: []consensus.Build{{Derivation: fakeDrv(j), System: hostSystem()}},
			Drvs:   []consensus.Drv{drvRecord(j, j-7, j-14)},
		})
		testutil.Eventually(b, 10*time.Second, "the planner holds the new build", func() bool { return has(ids[0]) })
	}
	b.StopTimer()
	rounds, busy := lp.Rounds()
	rounds, busy = rounds-rounds0, busy-busy0
	rebuild := lp.Reread()
	if rounds > 0 {
		b.ReportMetric(float64(busy.Microseconds())/1000/float64(rounds), "round-ms")
	}
	b.ReportMetric(float64(full.Microseconds())/1000, "full-read-ms")
	b.ReportMetric(float64(rebuild.Microseconds())/1000, "term-start-ms")
	b.Logf("planner: %+v", stats)
	b.Logf("queue %d: %d rounds, %.3f ms per round; a full read and Schedule takes %v; reading the state into a Planner (once per term) %v",
		queued, rounds, float64(busy.Microseconds())/1000/float64(max(rounds, 1)), full, rebuild)
}
