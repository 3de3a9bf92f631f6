package node

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/drvmesh/drvmesh/api"
	"github.com/drvmesh/drvmesh/internal/testutil"
)

// buildMesh is a mesh of nix-building nodes, each with its own chroot
// store, and a client with its own store that talks to it through the
// real drvmesh binary.
type buildMesh struct {
	*testMesh
	t     *testing.T
	bin   string // the drvmesh binary
	token string
	dir   string // scratch space: client stores, substitution stores
}

// newBuildMesh builds the drvmesh binary and starts names as nix nodes.
func newBuildMesh(t *testing.T, names ...string) *buildMesh {
	t.Helper()
	testutil.RequireNix(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "drvmesh")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/drvmesh").CombinedOutput()
	if err != nil {
		t.Fatalf("go build drvmesh: %v\n%s", err, out)
	}
	m := &buildMesh{testMesh: newTestMesh(t), t: t, bin: bin, dir: dir}
	for i, name := range names {
		tweak := func(c *Config) {
			c.Builder = "nix"
			c.NixStore = "local?root=" + filepath.Join(dir, "store-"+name)
			c.MaxJobs = 2
			c.Scale = 4 // Nix builds load the machine; keep leaders stable
		}
		if i == 0 {
			m.bootstrap(name, tweak)
		} else {
			m.join(name, tweak)
		}
	}
	m.token = m.adminToken(names[0])
	testutil.Eventually(t, 30*time.Second, "every node alive and building", func() bool {
		for _, name := range names {
			n := m.node(name)
			nodes, _ := schedNodes(n, n.raft.State())
			if len(nodes) != len(names) {
				return false
			}
		}
		return true
	})
	return m
}

// nixEnv is the environment of a Nix command against the chroot store
// under root.
func nixEnv(root, extra string) []string { return testutil.NixEnv(root, extra) }

// nix runs a Nix tool against the chroot store under root and returns
// its stdout.
func (m *buildMesh) nix(root, extra string, args ...string) string {
	m.t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = nixEnv(root, extra)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		m.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, lastLines(stderr.String(), 20))
	}
	return strings.TrimSpace(string(out))
}

// instantiate evaluates attr of a Nix file into the client store under
// root and returns the .drv path.
func (m *buildMesh) instantiate(root, file, attr string, args ...string) string {
	m.t.Helper()
	cmd := append([]string{"nix-instantiate", "--store", "local?root=" + root, file, "-A", attr}, args...)
	return m.nix(root, "", cmd...)
}

// cli runs the drvmesh binary and returns its stdout.
func (m *buildMesh) cli(args ...string) (string, error) {
	m.t.Helper()
	cmd := exec.Command(m.bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("drvmesh %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

// submit runs drvmesh submit --json against node n for drvs in the client
// store under root and returns the created (or found) builds.
func (m *buildMesh) submit(n *Node, root string, flags []string, drvs ...string) []api.SubmittedBuild {
	m.t.Helper()
	args := append([]string{"submit", "--json", "--nix-store", "local?root=" + root, "--server", n.URL(), "--token", m.token}, flags...)
	out, err := m.cli(append(args, drvs...)...)
	if err != nil {
		m.t.Fatal(err)
	}
	var res api.SubmitResponse
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		m.t.Fatalf("submit output %q: %v", out, err)
	}
	return res.Builds
}

// getBuild reads one build through node n's API, as a client would; nil
// while the mesh elects a leader.
func getBuild(t *testing.T, n *Node, id string) *api.Build {
	t.Helper()
	code, body := adminGet(t, n, "/api/v1/builds/"+id+"?fresh=1")
	if code == http.StatusServiceUnavailable {
		return nil
	}
	if code != http.StatusOK {
		t.Fatalf("GET build %s: %d %s", id, code, body)
	}
	b, err := decodeStrict[api.Build](body)
	if err != nil {
		t.Fatalf("build %s: %v", id, err)
	}
	return &b
}

// decodeStrict decodes the JSON of an API answer into T, refusing a field
// T lacks: the replicated records must not leak to clients unnoticed.
func decodeStrict[T any](body []byte) (T, error) {
	var v T
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err := dec.Decode(&v)
	return v, err
}

// waitState waits until a build is in one of states and returns it.
func waitState(t *testing.T, n *Node, id string, timeout time.Duration, states ...string) *api.Build {
	t.Helper()
	var b *api.Build
	defer func() {
		if t.Failed() {
			t.Logf("build %s last seen as %+v", id, b)
		}
	}()
	testutil.Eventually(t, timeout, fmt.Sprintf("build %s reaches %v", id, states), func() bool {
		if b = getBuild(t, n, id); b == nil {
			return false
		}
		for _, s := range states {
			if string(b.State) == s {
				return true
			}
		}
		return false
	})
	return b
}

// markerProcs lists the pids of processes whose command line holds marker.
func markerProcs(marker string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(marker)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// nodeOtherThan returns a running node whose name is not in names.
func (m *testMesh) nodeOtherThan(names ...string) *Node {
	m.t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, n := range m.nodes {
		skip := false
		for _, x := range names {
			skip = skip || x == name
		}
		if !skip {
			return n
		}
	}
	m.t.Fatalf("no running node other than %v", names)
	return nil
}

func lastLines(s string, k int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > k {
		lines = lines[len(lines)-k:]
	}
	return strings.Join(lines, "\n")
}

func uniqueSalt(t *testing.T) string {
	return fmt.Sprintf("%s-%d", strings.ReplaceAll(t.Name(), "/", "-"), time.Now().UnixNano())
}
