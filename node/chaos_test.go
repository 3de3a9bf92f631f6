package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/drvmesh/drvmesh/builder"
	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/gossip"
	"github.com/drvmesh/drvmesh/internal/testutil"
	"github.com/drvmesh/drvmesh/narcache"
	"github.com/drvmesh/drvmesh/node/cluster"
)

// freeAddr is a loopback address whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// fixedPorts gives a node fixed ports, so that a restart comes back on
// the same addresses, as a real node does.
func fixedPorts(t *testing.T) func(*Config) {
	addrs := [4]string{freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)}
	return func(c *Config) {
		c.Listen, c.ClusterListen, c.GossipListen, c.P2PListen = addrs[0], addrs[1], addrs[2], addrs[3]
	}
}

// TestNode_RestartHandsBackUnseenBuild restarts a builder on its own
// addresses within a moment of a crash, so gossip never declares it
// dead, while its own state never saw the build it was running: the
// hand-back at start must still return the build to the queue, with
// its attempt lost.
func TestNode_RestartHandsBackUnseenBuild(t *testing.T) {
	m := newTestMesh(t)
	// LAN timings: a node back within a second is never declared dead.
	lead := m.bootstrap("lead", func(c *Config) { c.Fast = false })
	ports := fixedPorts(t)
	m.join("b1", func(c *Config) {
		ports(c)
		c.Builder, c.builder, c.MaxJobs, c.Fast = "nix", &holdBuilder{}, 1, false
	})
	// A system no node builds: only this test assigns the build.
	id := submitSystem(t, lead, 1, "riscv64-plan9")
	m.kill("b1")
	none := func() bool { return false }
	applyEnsure(t, lead, &consensus.AssignBuilds{Assignments: []consensus.Assignment{{BuildID: id, Node: "b1"}}}, none)
	// Only b1 may start its build, and b1 is down: write the start into
	// the log at the leader directly, as b1 had just before it crashed.
	forgeAtLeader(t, lead, &consensus.StartBuild{ID: id, Node: "b1"})
	m.restart("b1")
	testutil.Eventually(t, 20*time.Second, "the build is queued again with its attempt lost", func() bool {
		b, err := lead.raft.State().GetBuild(id)
		return err == nil && b.State == consensus.StateQueued && len(b.Attempts) == 1 && b.Attempts[0].Result == consensus.ResultLost
	})
}

// forgeAtLeader writes cmd into the log through the leader's raft,
// without the checks of who may issue it: for tests that recreate what a
// node had done just before it crashed.
func forgeAtLeader(t *testing.T, leader *Node, cmd consensus.Command) {
	t.Helper()
	var err error
	testutil.Eventually(t, 20*time.Second, fmt.Sprintf("%T applied at %s", cmd, leader.Name()), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = leader.raft.Apply(ctx, cmd)
		return err == nil
	})
}

// TestNode_RepairLostCopies records a nar held by one node and asks
// nobody to copy it, as when the builder is killed right after its
// FinishOutputs committed: the builder comes back, and the mesh still
// copies the nar until it has MinCopies holders. The builder comes back
// on its own addresses within a moment, under LAN timings, so gossip
// never declares it dead (which would copy its nars again).
func TestNode_RepairLostCopies(t *testing.T) {
	m := newTestMesh(t)
	lan := func(c *Config) { c.Fast = false }
	ports := fixedPorts(t)
	m.bootstrap("n1", lan)
	m.join("n2", func(c *Config) { lan(c); ports(c) })
	m.join("n3", lan)
	names := []string{"n1", "n2", "n3"}
	waitSettled(t, m, names)
	n2 := m.node("n2")
	s := makeSource(t, "lost-copy", "copied after a crash\n")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nar, err := n2.disk.Ingest(ctx, bytes.NewReader(s.nar), narcache.Expect{NarHash: s.narHash, NarSize: int64(len(s.nar))})
	if err != nil {
		t.Fatal(err)
	}
	rec := n2.keep.Record(s.path, nar, nil, "", "", "")
	if _, err := n2.fwd.As(cluster.RoleNode).ApplyAtLeader(ctx, &consensus.PutNarInfos{NarInfos: []consensus.NarInfo{rec}, Holder: "n2"}); err != nil {
		t.Fatal(err)
	}
	m.kill("n2")
	m.restart("n2")
	testutil.Eventually(t, 30*time.Second, s.path+" on two nodes, each with the file", func() bool {
		ni := narRecord(m.waitLeader(), s.hashPart)
		if ni == nil || len(ni.Holders) < 2 {
			return false
		}
		for _, h := range ni.Holders {
			if nd := m.node(h); nd == nil || !narOnDisk(nd, narKey(t, ni)) {
				return false
			}
		}
		return true
	})
}

// failBuilder fails every build at once, as a build does whose input no
// holder could send.
type failBuilder struct{ holdBuilder }

func (*failBuilder) Build(context.Context, builder.Request, io.Writer) (builder.Result, error) {
	return builder.Result{}, errors.New("no holder could send an input")
}

// TestNode_UnreachableInputWaits takes down the only holder of a
// build's .drv and source: the build waits, deferred, instead of failing
// (it has no retries), and is not counted as failed.
func TestNode_UnreachableInputWaits(t *testing.T) {
	m := newTestMesh(t)
	lead := m.bootstrap("lead", nil)
	m.join("b1", func(c *Config) { c.Builder, c.builder, c.MaxJobs = "nix", &failBuilder{}, 1 })
	m.join("h", nil)
	waitSettled(t, m, []string{"lead", "b1", "h"})
	drv, src := fakeDrv(1), "/nix/store/"+strings.Repeat("s", 32)+"-src"
	var recs []consensus.NarInfo
	for i, p := range []string{drv, src} {
		recs = append(recs, consensus.NarInfo{StorePath: p, NarHash: "sha256:" + strings.Repeat("0", 51) + strconv.Itoa(i), NarSize: 100})
	}
	applyEnsure(t, m.node("h"), &consensus.PutNarInfos{NarInfos: recs, Holder: "h"}, func() bool { return false })
	m.kill("h")
	for _, nm := range []string{"lead", "b1"} {
		testutil.Eventually(t, 20*time.Second, nm+" sees h dead", func() bool {
			mb, ok := m.node(nm).gossip.Member("h")
			return ok && mb.Status == gossip.StatusDead
		})
	}
	b := consensus.Build{ID: consensus.NewBuildID(time.Now()), Derivation: drv, System: hostSystem(), Retries: 0}
	applyEnsure(t, lead, &consensus.SubmitBuilds{
		Builds: []consensus.Build{b},
		Drvs:   []consensus.Drv{{Path: drv, System: hostSystem(), InputSrcs: []string{src}}},
	}, func() bool { return false })
	testutil.Eventually(t, 20*time.Second, "the build waits for its inputs, deferred", func() bool {
		got, err := lead.raft.State().GetBuild(b.ID)
		if err != nil || len(got.Attempts) == 0 {
			return false
		}
		if got.State == consensus.StateFailed {
			t.Fatalf("the build failed: %s", got.Error)
		}
		last := got.Attempts[len(got.Attempts)-1]
		return last.Result == consensus.ResultMissingInputs && got.DeferUntil.After(last.FinishedAt)
	})
}

// TestNode_UploadAnsweredWithCopies checks that an upload is answered
// only once the nar is on two nodes: a submission of it then survives
// the restart of the node it was uploaded to.
func TestNode_UploadAnsweredWithCopies(t *testing.T) {
	m := newTestMesh(t)
	m.bootstrap("n1", nil)
	m.join("n2", nil)
	m.join("n3", nil)
	waitSettled(t, m, []string{"n1", "n2", "n3"})
	token := m.adminToken("n1")
	for i, via := range []string{"n1", "n2", "n3"} {
		s := makeSource(t, fmt.Sprintf("answered-%d", i), fmt.Sprintf("copied before the answer %d\n", i))
		n := m.node(via)
		uploadSrc(t, n, token, s)
		// Every holder's record committed before its holder answered
		// the copy request: a linearizable read after the answer sees
		// them all, whichever node leads by then.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := n.fwd.CatchUpWithLeader(ctx)
		cancel()
		if err != nil {
			t.Fatalf("catch up with the leader: %v", err)
		}
		if ni := narRecord(n, s.hashPart); ni == nil || len(ni.Holders) < 2 {
			t.Fatalf("upload through %s answered with the nar on %v", via, ni)
		}
	}
}
