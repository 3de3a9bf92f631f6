package testbed

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/drvmesh/drvmesh/internal/testutil"
)

// Errors of the testbed.
var (
	// ErrUnsupported: the testbed needs Linux network namespaces.
	ErrUnsupported = errors.New("network namespaces are not supported here")
	// ErrNoMember: the name is no host, client or bridge of the testbed.
	ErrNoMember = errors.New("no such member of the testbed")
	// ErrStatus: a host answered with a status other than 2xx.
	ErrStatus = errors.New("unexpected HTTP status")
)

// Config says what to start. The zero value starts three hosts without a
// builder.
type Config struct {
	// Hosts is how many hosts to start (default 3): h1 bootstraps, the
	// others join through it.
	Hosts int
	// Builder is "none" (default) or "nix" (a chroot store per host).
	Builder string
	// Scale is the hosts' --timing-scale (default 1).
	Scale float64
	// Disk is the size of each host's tmpfs data dir (default "64m").
	Disk string
	// NodeFlags are appended to every host's command line.
	NodeFlags []string
	// RequestTimeout bounds each request of the HTTP clients (default 3s).
	RequestTimeout time.Duration
}

// Testbed is a running set of hosts. Its fault methods fail the test on
// error, so call them from the test's goroutine; Script returns errors.
type Testbed struct {
	t       testing.TB
	path    string // scripts/testbed.sh
	dir     string
	hosts   []string
	ns      map[string]string // member (host or "client") → namespace name
	addr    map[string]string // host → IP:port
	ip      map[string]string // host or client → IP
	timeout time.Duration
	client  *http.Client
}

// Status is a host's GET /api/v1/status.
type Status struct {
	Node        string   `json:"node"`
	Leader      string   `json:"leader"`
	Term        uint64   `json:"term"`
	CommitIndex uint64   `json:"commit_index"`
	Voters      []string `json:"voters"`
	Nonvoters   []string `json:"nonvoters"`
}

// Require skips the test unless it can run a testbed: root, Linux, and the
// tools. Under CI a missing requirement fails the test instead.
func Require(t testing.TB) {
	t.Helper()
	skip := t.Skipf
	if os.Getenv("CI") != "" {
		skip = t.Fatalf
	}
	if runtime.GOOS != "linux" {
		skip("the testbed needs Linux network namespaces")
	}
	if os.Geteuid() != 0 {
		skip("the testbed needs root (network namespaces, tmpfs mounts, nft); run as root")
	}
	testutil.RequireTool(t, "ip", "tc", "nft", "curl", "jq", "bash")
}

// New starts a testbed of cfg.Hosts hosts and waits until every one is a
// raft member. It skips the test when Require does, and removes
// everything when the test ends, failed or not. With
// DRVMESH_TESTBED_KEEP=1 a failed test leaves the testbed up and logs how
// to reach and remove it.
func New(t testing.TB, cfg Config) *Testbed {
	t.Helper()
	Require(t)
	if testing.Short() {
		t.Skip("the testbed starts real hosts; skipped in -short mode")
	}
	if cfg.Hosts == 0 {
		cfg.Hosts = 3
	}
	if cfg.Builder == "" {
		cfg.Builder = "none"
	}
	if cfg.Scale == 0 {
		cfg.Scale = 1
	}
	if cfg.Disk == "" {
		cfg.Disk = "64m"
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 3 * time.Second
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatalf("find the repository: %v", err)
	}
	dir, err := os.MkdirTemp("", "drvmesh-testbed-")
	if err != nil {
		t.Fatalf("make state dir: %v", err)
	}
	tb := &Testbed{
		t: t, path: filepath.Join(root, "scripts", "testbed.sh"), dir: dir,
		ns: map[string]string{}, addr: map[string]string{}, ip: map[string]string{}, timeout: cfg.RequestTimeout,
	}
	for i := 1; i <= cfg.Hosts; i++ {
		tb.hosts = append(tb.hosts, "h"+strconv.Itoa(i))
	}
	t.Cleanup(tb.cleanup)

	bin := filepath.Join(dir, "drvmesh.bin")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "./cmd/drvmesh")...)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build drvmesh: %v\n%s", err, out)
	}

	up := []string{"up", strconv.Itoa(cfg.Hosts), "--builder", cfg.Builder,
		"--scale", strconv.FormatFloat(cfg.Scale, 'g', -1, 64), "--disk", cfg.Disk}
	if len(cfg.NodeFlags) > 0 {
		up = append(append(up, "--"), cfg.NodeFlags...)
	}
	if _, err := tb.run([]string{"TESTBED_BIN=" + bin}, up...); err != nil {
		t.Fatalf("start testbed: %v", err)
	}
	for _, m := range append([]string{"br", "client"}, tb.hosts...) {
		ns, err := tb.Script("ns", m)
		if err != nil {
			t.Fatalf("name namespace of %s: %v", m, err)
		}
		tb.ns[m] = strings.TrimSpace(ns)
		if m == "br" {
			continue
		}
		a, err := tb.Script("addr", m)
		if err != nil {
			t.Fatalf("address of %s: %v", m, err)
		}
		a = strings.TrimSpace(a)
		tb.ip[m] = a
		if m != "client" {
			tb.addr[m] = a
			tb.ip[m], _, _ = net.SplitHostPort(a)
		}
	}
	tb.client = tb.HTTPFrom("client")
	return tb
}

// repoRoot is the directory of go.mod above this package's source.
func repoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("no caller information")
	}
	for d := filepath.Dir(file); ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s", file)
		}
	}
}

// cleanup removes the testbed, first logging the end of every host's log
// when the test failed.
func (tb *Testbed) cleanup() {
	if tb.t.Failed() {
		for _, h := range tb.hosts {
			b, err := os.ReadFile(filepath.Join(tb.dir, h, "log"))
			if err != nil {
				continue
			}
			lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
			if len(lines) > 40 {
				lines = lines[len(lines)-40:]
			}
			tb.t.Logf("last lines of %s's log:\n%s", h, strings.Join(lines, "\n"))
		}
		if os.Getenv("DRVMESH_TESTBED_KEEP") != "" {
			tb.t.Logf("the testbed is left up: %s -d %s status; remove it with: %s -d %s down", tb.path, tb.dir, tb.path, tb.dir)
			return
		}
	}
	if _, err := tb.Script("down"); err != nil {
		tb.t.Errorf("remove testbed: %v", err)
	}
}

// Script runs scripts/testbed.sh against this testbed and returns its
// standard output.
func (tb *Testbed) Script(args ...string) (string, error) {
	tb.t.Helper()
	return tb.run(nil, args...)
}

// run runs the script with env added to the test's environment.
func (tb *Testbed) run(env []string, args ...string) (string, error) {
	tb.t.Helper()
	tb.t.Logf("testbed.sh %s", strings.Join(args, " "))
	cmd := exec.Command("bash", append([]string{tb.path, "-d", tb.dir}, args...)...)
	// This process may have a thread in a member's namespace (In), which
	// makes it one of the namespace's processes: teardown spares it.
	cmd.Env = append(append(os.Environ(), "TESTBED_SPARE_PIDS="+strconv.Itoa(os.Getpid())), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("testbed.sh %s: %w\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

func (tb *Testbed) must(args ...string) {
	tb.t.Helper()
	if _, err := tb.Script(args...); err != nil {
		tb.t.Fatal(err)
	}
}

// Hosts are the hosts' names, h1 first.
func (tb *Testbed) Hosts() []string { return append([]string(nil), tb.hosts...) }

// Dir is the testbed's state dir (the script's -d).
func (tb *Testbed) Dir() string { return tb.dir }

// DataDir is host h's data dir.
func (tb *Testbed) DataDir(h string) string { return filepath.Join(tb.dir, h, "data") }

// URL is host h's base URL, reachable from the testbed's namespaces only.
func (tb *Testbed) URL(h string) string { return "http://" + tb.addr[h] }

// AdminToken is the mesh's admin token, from h1's data dir.
func (tb *Testbed) AdminToken() string {
	tb.t.Helper()
	b, err := os.ReadFile(filepath.Join(tb.DataDir("h1"), "admin-token"))
	if err != nil {
		tb.t.Fatalf("read admin token: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// Kill sends SIGKILL to h and waits for it to die.
func (tb *Testbed) Kill(h string) { tb.t.Helper(); tb.must("kill", h) }

// Stop stops h with SIGTERM and waits for it to exit.
func (tb *Testbed) Stop(h string) { tb.t.Helper(); tb.must("stop", h) }

// Start starts h again from its data dir.
func (tb *Testbed) Start(h string) { tb.t.Helper(); tb.must("start", h) }

// Pause stops h's process with SIGSTOP; Resume continues it.
func (tb *Testbed) Pause(h string) { tb.t.Helper(); tb.must("pause", h) }

// Resume continues a paused host with SIGCONT.
func (tb *Testbed) Resume(h string) { tb.t.Helper(); tb.must("resume", h) }

// Cut partitions group from the other hosts, both directions. Cuts add up
// until Heal. The client reaches every host unless it is named in group.
func (tb *Testbed) Cut(group ...string) { tb.t.Helper(); tb.must(append([]string{"cut"}, group...)...) }

// CutOneWay drops packets from one member to another, not back.
func (tb *Testbed) CutOneWay(from, to string) { tb.t.Helper(); tb.must("cut-oneway", from, to) }

// Netem applies a tc netem spec ("delay 100ms loss 5%") to both
// directions of h's link. Kernels without sch_netem support "loss P%" only.
func (tb *Testbed) Netem(h, spec string) { tb.t.Helper(); tb.must("netem", h, spec) }

// Heal undoes every cut and netem.
func (tb *Testbed) Heal() { tb.t.Helper(); tb.must("heal") }

// FillDisk fills h's data dir until writes fail; FreeDisk undoes it.
func (tb *Testbed) FillDisk(h string) { tb.t.Helper(); tb.must("fill-disk", h) }

// FreeDisk removes what FillDisk wrote.
func (tb *Testbed) FreeDisk(h string) { tb.t.Helper(); tb.must("free-disk", h) }

// HTTP is a client whose connections start in the client namespace,
// which reaches every host unless a cut names it.
func (tb *Testbed) HTTP() *http.Client { return tb.client }

// HTTPWithin is HTTP with another time limit per request, for requests
// that may wait on the mesh (an upload waits for its copies).
func (tb *Testbed) HTTPWithin(d time.Duration) *http.Client {
	c := *tb.client
	c.Timeout = d
	return &c
}

// HTTPFrom is a client whose connections start in member m's namespace
// (a host or "client"): requests from a host to another cross the cuts
// between them. Every request opens a new connection, so none outlives a
// fault on an old one.
func (tb *Testbed) HTTPFrom(m string) *http.Client {
	ns, ok := tb.ns[m]
	if !ok || m == "br" {
		tb.t.Fatalf("HTTP from %q: %v", m, ErrNoMember)
	}
	path := "/run/netns/" + ns
	return &http.Client{
		Timeout: tb.timeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				var conn net.Conn
				err := inNamespace(path, func() error {
					var d net.Dialer
					var err error
					conn, err = d.DialContext(ctx, network, addr)
					return err
				})
				if err != nil && conn != nil {
					conn.Close()
					conn = nil
				}
				return conn, err
			},
			DisableKeepAlives: true,
		},
	}
}

// In runs fn on a thread inside member m's network namespace (a host,
// "client" or "br"): sockets fn opens, listening or dialling, belong to
// that namespace for their whole life. fn must not start goroutines that
// open sockets, for they run outside.
func (tb *Testbed) In(m string, fn func() error) error {
	ns, ok := tb.ns[m]
	if !ok {
		return fmt.Errorf("enter %s: %w", m, ErrNoMember)
	}
	return inNamespace("/run/netns/"+ns, fn)
}

// IP is member m's address on the testbed's subnet (a host or "client").
func (tb *Testbed) IP(m string) string { return tb.ip[m] }

// Status asks host h for its raft view, from the client namespace.
func (tb *Testbed) Status(h string) (Status, error) {
	var st Status
	err := tb.GetJSON(tb.client, h, "/api/v1/status", &st)
	return st, err
}

// GetJSON decodes the answer of GET path on host h into v, through c.
func (tb *Testbed) GetJSON(c *http.Client, h, path string, v any) error {
	resp, err := c.Get(tb.URL(h) + path)
	if err != nil {
		return fmt.Errorf("get %s%s: %w", h, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read %s%s: %w", h, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("get %s%s: %w %d: %s", h, path, ErrStatus, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decode %s%s: %w", h, path, err)
	}
	return nil
}
