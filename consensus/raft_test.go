package consensus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/drvmesh/drvmesh/internal/testutil"
)

const waitFor = 10 * time.Second

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func testConfig(t testing.TB, id, dir, addr string, bootstrap bool) Config {
	cfg := Config{
		NodeID: id, DataDir: dir, Advertise: addr, Bootstrap: bootstrap,
		Logger: slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelError})),
	}
	cfg.SetTimings(TestTimings())
	return cfg
}

func startNode(t testing.TB, cfg Config) *Raft {
	t.Helper()
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// cluster starts n nodes: the first bootstraps, the others join as
// nonvoters and are promoted once caught up.
func cluster(t testing.TB, n int, tweak func(*Config)) []*Raft {
	t.Helper()
	var nodes []*Raft
	for i := range n {
		cfg := testConfig(t, fmt.Sprintf("n%d", i+1), filepath.Join(t.TempDir(), "data"), "127.0.0.1:0", i == 0)
		if tweak != nil {
			tweak(&cfg)
		}
		r := startNode(t, cfg)
		if i == 0 {
			testutil.Eventually(t, waitFor, "bootstrap node leads", r.IsLeader)
		} else {
			joinNode(t, nodes[0], r)
		}
		nodes = append(nodes, r)
	}
	return nodes
}

func joinNode(t testing.TB, leader, r *Raft) {
	t.Helper()
	id := r.cfg.NodeID
	if err := leader.AddNonvoter(id, r.Addr()); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, waitFor, id+" catches up", func() bool {
		_, commit, _ := leader.Stats()
		return r.AppliedIndex() >= commit
	})
	if err := leader.AddVoter(id, r.Addr()); err != nil {
		t.Fatal(err)
	}
}

func leaderOf(t testing.TB, nodes []*Raft) *Raft {
	t.Helper()
	var l *Raft
	testutil.Eventually(t, waitFor, "a leader is elected", func() bool {
		for _, n := range nodes {
			if n.IsLeader() {
				l = n
				return true
			}
		}
		return false
	})
	return l
}

// submitN submits n builds through whichever node leads, retrying while
// leadership moves (as a client would), and returns the acknowledged ids.
func submitN(t testing.TB, nodes []*Raft, n int, tag string) []string {
	t.Helper()
	cmd := &SubmitBuilds{}
	for i := range n {
		cmd.Builds = append(cmd.Builds, Build{Derivation: storePath(i, tag+".drv"), System: "x86_64-linux", Tags: map[string]string{"t": tag}})
	}
	var ids []string
	testutil.Eventually(t, waitFor, "submit is acknowledged", func() bool {
		for _, r := range nodes {
			res, err := r.Apply(context.Background(), cmd)
			if err == nil {
				ids = res.(*SubmitResult).IDs
				return true
			}
			if !errors.Is(err, ErrNotLeader) && !errors.Is(err, raft.ErrLeadershipLost) && !errors.Is(err, ErrClosed) {
				t.Fatal(err)
			}
		}
		return false
	})
	return ids
}

func hasBuilds(r *Raft, ids []string) bool {
	for _, id := range ids {
		if _, err := r.State().GetBuild(id); err != nil {
			return false
		}
	}
	return true
}

func TestRaft_Cluster(t *testing.T) {
	nodes := cluster(t, 3, nil)
	leader := nodes[0]
	servers, err := leader.Servers()
	if err != nil || len(servers) != 3 || !servers[1].Voter || !servers[2].Voter {
		t.Fatalf("servers = %+v, %v", servers, err)
	}
	ids := submitN(t, nodes, 10, "a")

	t.Run("writes replicate", func(t *testing.T) {
		for _, n := range nodes {
			testutil.Eventually(t, waitFor, n.cfg.NodeID+" has the builds", func() bool { return hasBuilds(n, ids) })
		}
	})
	t.Run("follower refuses writes and names the leader", func(t *testing.T) {
		_, err := nodes[1].Apply(context.Background(), &SubmitBuilds{})
		var nl *NotLeaderError
		if !errors.As(err, &nl) || !errors.Is(err, ErrNotLeader) || nl.LeaderID != "n1" || nl.LeaderAddr != leader.Addr() {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("command errors come back as errors", func(t *testing.T) {
		_, err := leader.Apply(context.Background(), &CancelBuilds{IDs: []string{NewBuildID(time.Now())}})
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("err = %v", err)
		}
	})

	var acked []string
	acked = append(acked, ids...)
	t.Run("leader killed, survivors elect and keep every write", func(t *testing.T) {
		addr := leader.Addr()
		if err := leader.Close(); err != nil {
			t.Fatal(err)
		}
		survivors := nodes[1:]
		leaderOf(t, survivors)
		acked = append(acked, submitN(t, survivors, 5, "b")...)
		for _, n := range survivors {
			testutil.Eventually(t, waitFor, n.cfg.NodeID+" has every acknowledged build", func() bool { return hasBuilds(n, acked) })
		}

		t.Run("restarted node catches up from its data dir", func(t *testing.T) {
			cfg := leader.cfg
			cfg.Advertise, cfg.Bootstrap = addr, false
			r := startNode(t, cfg)
			testutil.Eventually(t, waitFor, "restarted node has every build", func() bool { return hasBuilds(r, acked) })
			// A submit retried after raft.ErrLeadershipLost may have
			// committed twice, so compare with a survivor, not len(acked).
			want, _ := survivors[0].State().Counts()
			if want[StateQueued] < len(acked) {
				t.Fatalf("survivor counts = %v, want >= %d queued", want, len(acked))
			}
			testutil.Eventually(t, waitFor, "restarted node counts match a survivor", func() bool {
				c, err := r.State().Counts()
				return err == nil && maps.Equal(c, want)
			})
		})
	})
}

func TestRaft_Snapshot(t *testing.T) {
	tweak := func(c *Config) { c.SnapshotThreshold, c.TrailingLogs = 4, 2 }
	nodes := cluster(t, 1, tweak)
	var ids []string
	for i := range 20 {
		ids = append(ids, submitN(t, nodes, 3, fmt.Sprint("s", i))...)
	}
	if err := nodes[0].Snapshot(); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, "late", filepath.Join(t.TempDir(), "data"), "127.0.0.1:0", false)
	tweak(&cfg)
	late := startNode(t, cfg)
	joinNode(t, nodes[0], late)
	testutil.Eventually(t, waitFor, "late joiner has every build", func() bool { return hasBuilds(late, ids) })
	snaps, err := os.ReadDir(filepath.Join(cfg.DataDir, "snapshots"))
	if err != nil || len(snaps) == 0 {
		t.Fatalf("late joiner installed no snapshot: %v %v", snaps, err)
	}
	more := submitN(t, nodes, 2, "after")
	testutil.Eventually(t, waitFor, "late joiner follows the log after the snapshot", func() bool { return hasBuilds(late, more) })
}

func TestRaft_WatchLeadership(t *testing.T) {
	cfg := testConfig(t, "solo", t.TempDir(), "127.0.0.1:0", true)
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ch, cancel := r.WatchLeadership()
	defer cancel()
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	select {
	case v := <-ch:
		if !v {
			t.Fatal("first leadership signal is false")
		}
	case <-time.After(waitFor):
		t.Fatal("no leadership signal")
	}
	if _, err := r.Apply(context.Background(), &SubmitBuilds{}); err != nil {
		t.Fatal(err)
	}
	if _, err := (&Raft{}).Apply(context.Background(), &SubmitBuilds{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("apply on unstarted raft: %v", err)
	}
}

// TestRaft_Nudge: with a commit timeout far longer than the test waits, a
// follower learns of a commit only through the leader's next entry; Nudge
// is that entry.
func TestRaft_Nudge(t *testing.T) {
	slow := func(id string, bootstrap bool) *Raft {
		cfg := testConfig(t, id, filepath.Join(t.TempDir(), "data"), "127.0.0.1:0", bootstrap)
		cfg.CommitTimeout = 10 * time.Minute
		return startNode(t, cfg)
	}
	leader := slow("n1", true)
	testutil.Eventually(t, waitFor, "bootstrap node leads", leader.IsLeader)
	follower := slow("n2", false)
	if err := leader.AddNonvoter("n2", follower.Addr()); err != nil {
		t.Fatal(err)
	}
	// caughtUp fixes the leader's commit index now and then nudges until
	// the follower has applied it. A nudge carries the commit index as of
	// its sending, so the first one that arrives is enough. (Reading the
	// index anew at each poll would chase the nudges' own entries, which
	// a voter learns are committed only with the next one.)
	caughtUp := func() func() bool {
		_, commit, _ := leader.Stats()
		return func() bool {
			leader.Nudge()
			return follower.AppliedIndex() >= commit
		}
	}
	testutil.Eventually(t, waitFor, "the follower catches up", caughtUp())
	// A voter: the leader commits an entry only once the follower has it,
	// so the entry itself cannot carry its own commit.
	if err := leader.AddVoter("n2", follower.Addr()); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, waitFor, "the voter catches up", caughtUp())

	ids := submitN(t, []*Raft{leader}, 3, "nudge")
	leader.Nudge()
	testutil.Eventually(t, 10*time.Second, "the follower applies the submission", func() bool { return hasBuilds(follower, ids) })
}
