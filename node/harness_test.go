package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/internal/testutil"
	"github.com/drvmesh/drvmesh/node/cluster"
)

// testMesh runs real nodes in this process: real TCP, TLS, raft,
// memberlist and libp2p on 127.0.0.1, with timings cut for tests.
type testMesh struct {
	t     testing.TB
	mu    sync.Mutex
	nodes map[string]*Node
	cfgs  map[string]Config
	base  string
	admin string // the admin token, once a node bootstrapped the mesh

	logsDone *atomic.Bool
}

// nodeTokens maps each test node to its mesh's admin token, for the reads
// that need it (see tokenOf).
var nodeTokens sync.Map

func newTestMesh(t testing.TB) *testMesh {
	t.Helper()
	m := &testMesh{t: t, nodes: map[string]*Node{}, cfgs: map[string]Config{}, base: t.TempDir(), logsDone: &atomic.Bool{}}
	t.Cleanup(func() { m.logsDone.Store(true) })
	t.Cleanup(func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		var wg sync.WaitGroup
		for _, n := range m.nodes {
			wg.Add(1)
			go func() { defer wg.Done(); n.Kill() }()
		}
		wg.Wait()
	})
	return m
}

// tWriter sends logs to the test until it ends; memberlist goroutines
// that outlive a node's shutdown by a moment may still log, and those
// lines are dropped.
type tWriter struct {
	t    testing.TB
	done *atomic.Bool
}

func (w tWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// config is a node configuration on free loopback ports.
func (m *testMesh) config(name string, tweak func(*Config)) Config {
	level := slog.LevelWarn
	if os.Getenv("DRVMESH_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	c := Config{
		DataDir: filepath.Join(m.base, name), Name: name,
		Listen: "127.0.0.1:0", ClusterListen: "127.0.0.1:0", GossipListen: "127.0.0.1:0", P2PListen: "127.0.0.1:0",
		Builder: "none", MaxJobs: 2, Fast: true, DeadAfter: 2 * time.Second,
		Logger: slog.New(slog.NewTextHandler(tWriter{m.t, m.logsDone}, &slog.HandlerOptions{Level: level})).With("test_node", name),
	}
	if tweak != nil {
		tweak(&c)
	}
	return c
}

// start starts a node from a configuration and remembers it.
func (m *testMesh) start(cfg Config) *Node {
	m.t.Helper()
	n, err := New(cfg)
	if err != nil {
		m.t.Fatalf("new node %s: %v", cfg.Name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		m.t.Fatalf("start node %s: %v", cfg.Name, err)
	}
	m.mu.Lock()
	m.nodes[cfg.Name], m.cfgs[cfg.Name] = n, cfg
	if n.AdminToken != "" {
		m.admin = n.AdminToken
	}
	nodeTokens.Store(n, m.admin)
	m.mu.Unlock()
	m.t.Cleanup(func() { nodeTokens.Delete(n) })
	return n
}

// tokenOf is the admin token of n's mesh.
func tokenOf(n *Node) string {
	tok, _ := nodeTokens.Load(n)
	s, _ := tok.(string)
	return s
}

// adminGet reads path from n with the admin token, as the CLI does.
func adminGet(t *testing.T, n *Node, path string) (int, []byte) {
	t.Helper()
	return httpDo(t, http.MethodGet, apiURL(n, path), tokenOf(n), nil)
}

// bootstrap starts the first node of a new mesh.
func (m *testMesh) bootstrap(name string, tweak func(*Config)) *Node {
	n := m.start(m.config(name, tweak))
	m.waitLeader()
	return n
}

// join starts a node that joins through any running member.
func (m *testMesh) join(name string, tweak func(*Config)) *Node {
	m.t.Helper()
	via := m.anyNode()
	cfg := m.config(name, tweak)
	cfg.Join = []string{via.HTTPAddr()}
	cfg.JoinToken = via.JoinToken()
	return m.start(cfg)
}

func (m *testMesh) anyNode() *Node {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range m.nodes {
		return n
	}
	m.t.Fatal("no node runs")
	return nil
}

func (m *testMesh) node(name string) *Node {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.nodes[name]
}

// kill stops a node as a crash would.
func (m *testMesh) kill(name string) {
	m.mu.Lock()
	n := m.nodes[name]
	delete(m.nodes, name)
	m.mu.Unlock()
	n.Kill()
}

// restart starts a stopped node again from its data dir (new ports).
func (m *testMesh) restart(name string) *Node {
	m.mu.Lock()
	cfg := m.cfgs[name]
	m.mu.Unlock()
	cfg.Join, cfg.JoinToken = nil, ""
	return m.start(cfg)
}

// waitLeader waits until every running node names the same leader.
func (m *testMesh) waitLeader() *Node {
	m.t.Helper()
	var leader *Node
	testutil.Eventually(m.t, 20*time.Second, "one leader known to all nodes", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		name := ""
		for _, n := range m.nodes {
			l, _ := n.raft.Leader()
			if l == "" || (name != "" && l != name) {
				return false
			}
			name = l
		}
		leader = m.nodes[name]
		return leader != nil && leader.raft.IsLeader()
	})
	return leader
}

// adminToken reads the bootstrap node's admin token file.
func (m *testMesh) adminToken(first string) string {
	b, err := os.ReadFile(filepath.Join(m.base, first, fileAdminToken))
	if err != nil {
		m.t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// httpDo sends a request to a node's public API.
func httpDo(t *testing.T, method, url, token string, body io.Reader) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func apiURL(n *Node, path string) string { return fmt.Sprintf("http://%s%s", n.HTTPAddr(), path) }

// apply commits cmd through n in the role whose issuer it is: the
// leader's commands as the leader (n must lead), a user's as an admin
// whose token n checked, a node's reports as n itself. It returns once
// n's state includes it.
func (n *Node) apply(ctx context.Context, cmd consensus.Command) ([]string, error) {
	return n.fwd.As(issuerRole(cmd)).ApplyAndCatchUp(ctx, cmd)
}

func issuerRole(cmd consensus.Command) cluster.Role {
	switch is := consensus.Issuers(cmd.Type()); {
	case is.Has(consensus.IssuerAdmin):
		return cluster.RoleAdmin
	case is.Has(consensus.IssuerLeader):
		return cluster.RoleLeader
	}
	return cluster.RoleNode
}
