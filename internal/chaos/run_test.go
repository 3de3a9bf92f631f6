package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drvmesh/drvmesh/api"
	"github.com/drvmesh/drvmesh/internal/testbed"
	"github.com/drvmesh/drvmesh/internal/testutil"
)

// run is one chaos run: the testbed, the graph's batches, and what the
// submissions acknowledged.
type run struct {
	t        *testing.T
	tb       *testbed.Testbed
	p        plan
	hosts    []string
	token    string
	clientNS string
	ns       map[string]string // host → its network namespace
	store    string            // the client's chroot store, holding the .drv files
	tag      string            // chaos=<seed>, on every build of the run
	hookLog  string
	roots    []string // a root .drv per batch

	mu    sync.Mutex
	acked []string // build ids a submit printed
}

func newRun(t *testing.T, tb *testbed.Testbed, p plan, hookLog string) *run {
	t.Helper()
	names := map[string]string{}
	for _, m := range append([]string{"client"}, tb.Hosts()...) {
		ns, err := tb.Script("ns", m)
		if err != nil {
			t.Fatal(err)
		}
		names[m] = strings.TrimSpace(ns)
	}
	return &run{
		t: t, tb: tb, p: p, hosts: tb.Hosts(), token: tb.AdminToken(), clientNS: names["client"], ns: names,
		store: filepath.Join(tb.Dir(), "client"), tag: fmt.Sprintf("chaos=%d", p.seed), hookLog: hookLog,
	}
}

// graphNix is a Nix expression of n derivations in layers of width, each
// on two of the layer below, each sleeping 0.2–1 s (drawn from rng) so
// that builds are in flight when faults hit, under a root on the top
// layer. salt makes each batch's derivations distinct.
func graphNix(rng *rand.Rand, n, width int) string {
	var b strings.Builder
	b.WriteString(`{ salt, system ? builtins.currentSystem }:
let
  mk = name: sleep: deps: derivation {
    inherit name system salt deps;
    builder = "/bin/sh";
    PATH = "/usr/bin:/bin";
    args = [ "-c" "sleep ${sleep}; echo ${name} > $out; for d in $deps; do echo $d >> $out; done" ];
  };
`)
	for i := range n {
		var deps []string
		if layer := i / width; layer > 0 {
			below := (layer - 1) * width
			deps = []string{fmt.Sprintf("n%d", below+i%width), fmt.Sprintf("n%d", below+(i+1)%width)}
		}
		fmt.Fprintf(&b, "  n%d = mk \"chaos-%d\" \"0.%d\" [ %s ];\n", i, i, 2+rng.IntN(9), strings.Join(deps, " "))
	}
	var top []string
	for i := (n - 1) / width * width; i < n; i++ {
		top = append(top, fmt.Sprintf("n%d", i))
	}
	fmt.Fprintf(&b, "in mk \"chaos-root\" \"0.2\" [ %s ]\n", strings.Join(top, " "))
	return b.String()
}

// instantiate writes the graph and instantiates one root per batch into
// the client's store.
func (r *run) instantiate() {
	r.t.Helper()
	src := graphNix(rand.New(rand.NewPCG(r.p.seed, 3)), perBatch, 5)
	file := filepath.Join(r.tb.Dir(), "graph.nix")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		r.t.Fatal(err)
	}
	env := testutil.NixEnv(filepath.Join(r.tb.Dir(), "clientnix"), "")
	for i := range r.p.batches {
		cmd := exec.Command("nix-instantiate", "--store", "local?root="+r.store, file, "--argstr", "salt", fmt.Sprintf("%d-%d", r.p.seed, i))
		cmd.Env = env
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			r.t.Fatalf("instantiate batch %d: %v\n%s", i, err, stderr.String())
		}
		r.roots = append(r.roots, strings.TrimSpace(string(out)))
	}
	r.t.Logf("instantiated %d batches of %d derivations", len(r.roots), perBatch+1)
}

// inClient runs a command in the client namespace and returns its
// standard output.
func (r *run) inClient(ctx context.Context, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", r.clientNS, name}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("run %s: %w: %s", name, err, lastLines(stderr.String(), 5))
	}
	return stdout.String(), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// submitAll submits the batches, spread over the fault period, each to a
// random host; a failed submission goes to another host, up to five
// tries, each on a different host. Every id a submit printed counts as
// acknowledged.
func (r *run) submitAll(ctx context.Context, rng *rand.Rand) {
	interval := r.p.faults * 7 / 10 / time.Duration(len(r.roots))
	start := time.Now()
	for i, root := range r.roots {
		select {
		case <-ctx.Done():
			// Slow submissions (a race-enabled build, a busy machine)
			// leave the last batches out; what was acknowledged is checked.
			r.t.Logf("the fault period ended before batch %d was submitted; %d batches left out", i, len(r.roots)-i)
			return
		case <-time.After(time.Until(start.Add(time.Duration(i) * interval))):
		}
		order := rng.Perm(len(r.hosts)) // each try on another host
		for try := range 5 {
			h := r.hosts[order[try%len(order)]]
			sctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
			out, err := r.inClient(sctx, []string{"DRVMESH_TOKEN=" + r.token}, filepath.Join(r.tb.Dir(), "drvmesh"),
				"submit", "--closure", "--tag", r.tag, "--nix-store", "local?root="+r.store, "--server", r.tb.URL(h), root)
			cancel()
			ids := strings.Fields(out)
			r.mu.Lock()
			r.acked = append(r.acked, ids...)
			r.mu.Unlock()
			if err == nil {
				r.t.Logf("batch %d: %d builds acknowledged by %s", i, len(ids), h)
				break
			}
			r.t.Logf("batch %d, try %d on %s: %d ids printed, then: %v", i, try+1, h, len(ids), err)
			time.Sleep(time.Second)
		}
	}
}

// get decodes host h's JSON answer to GET path into v.
func (r *run) get(h, path string, v any) error {
	_, err := r.getNext(h, path, v)
	return err
}

// getNext is get that also returns the answer's next-page cursor.
func (r *run) getNext(h, path string, v any) (string, error) {
	req, err := http.NewRequest(http.MethodGet, r.tb.URL(h)+path, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+r.token)
	resp, err := r.tb.HTTP().Do(req)
	if err != nil {
		return "", fmt.Errorf("get %s%s: %w", h, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("read %s%s: %w", h, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return "", fmt.Errorf("get %s%s: %w %d: %s", h, path, testbed.ErrStatus, resp.StatusCode, body)
	}
	return resp.Header.Get("X-Next-Cursor"), json.Unmarshal(body, v)
}

// builds lists the run's builds as host h sees them, page by page.
func (r *run) builds(h string) ([]api.Build, error) {
	var all []api.Build
	after := ""
	for {
		var page []api.Build
		next, err := r.getNext(h, "/api/v1/builds?limit=1000&tag="+r.tag+"&after="+after, &page)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if next == "" {
			return all, nil
		}
		after = next
	}
}

// leader is the leader the first answering host names, skipping hosts
// in skip; "" if none answers.
func (r *run) leader(skip []string) string {
	for _, h := range r.hosts {
		if slices.Contains(skip, h) {
			continue
		}
		if st, err := r.tb.Status(h); err == nil && st.Leader != "" {
			return st.Leader
		}
	}
	return ""
}

// recover ends every fault still standing (the injector undid its own)
// and waits until all hosts agree on a leader and five voters.
func (r *run) recover() {
	r.t.Helper()
	if _, err := r.tb.Script("heal"); err != nil {
		r.t.Error(err)
	}
	for _, h := range r.hosts {
		if _, err := r.tb.Script("free-disk", h); err != nil {
			r.t.Error(err)
		}
	}
	ok := poll(90*time.Second, func() bool {
		leader := ""
		for _, h := range r.hosts {
			st, err := r.tb.Status(h)
			if err != nil || st.Leader == "" || (leader != "" && st.Leader != leader) || len(st.Voters) != hosts {
				return false
			}
			leader = st.Leader
		}
		return true
	})
	if !ok {
		r.t.Errorf("the hosts did not agree on a leader and %d voters within 90 s of the faults' end", hosts)
	}
}

// running reports whether host h's process is alive.
func (r *run) running(h string) bool {
	b, err := os.ReadFile(filepath.Join(r.tb.Dir(), h, "pid"))
	if err != nil {
		return false
	}
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err != nil {
		return false
	}
	return alive(pid)
}

// lastWords is the first panic or fatal line of the end of h's log, or
// its last line.
func (r *run) lastWords(h string) string {
	b, _ := os.ReadFile(filepath.Join(r.tb.Dir(), h, "log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 200 {
		lines = lines[len(lines)-200:]
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "panic:") || strings.HasPrefix(l, "fatal error:") || strings.Contains(l, "level=ERROR msg=\"fatal") {
			return l
		}
	}
	return lines[len(lines)-1]
}

func (r *run) ackedIDs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := slices.Clone(r.acked)
	slices.Sort(ids)
	return slices.Compact(ids)
}

// poll calls cond every 200 ms until it holds or timeout passes, and
// reports whether it held.
func poll(timeout time.Duration, cond func() bool) bool {
	limit := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(limit) {
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
}
