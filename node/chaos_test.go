package node

import (
	"net"
	"testing"
	"time"

	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/internal/testutil"
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
	applyEnsure(t, lead, &consensus.StartBuild{ID: id, Node: "b1"}, none)
	m.restart("b1")
	testutil.Eventually(t, 20*time.Second, "the build is queued again with its attempt lost", func() bool {
		b, err := lead.raft.State().GetBuild(id)
		return err == nil && b.State == consensus.StateQueued && len(b.Attempts) == 1 && b.Attempts[0].Result == consensus.ResultLost
	})
}
