package node

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/drvmesh/drvmesh/api"
	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/internal/testutil"
	"github.com/drvmesh/drvmesh/store"
)

// TestNode_Builds runs real Nix builds on a mesh of three nix nodes, each
// with its own chroot store, submitted by the drvmesh binary from a
// client with a store of its own.
func TestNode_Builds(t *testing.T) {
	m := newBuildMesh(t, "b1", "b2", "b3")
	client := filepath.Join(m.dir, "client")
	salt := uniqueSalt(t)
	testdata := "testdata/builds.nix"

	var app api.SubmittedBuild
	t.Run("closure of a graph", func(t *testing.T) {
		drv := m.instantiate(client, "../examples/graph.nix", "app", "--argstr", "salt", salt)
		subs := m.submit(m.node("b2"), client, []string{"--closure"}, drv)
		if len(subs) != 5 {
			t.Fatalf("submit --closure made %d builds, want 5 (the whole graph): %+v", len(subs), subs)
		}
		if subs[0].Derivation != drv {
			t.Fatalf("first build is %s, want the submitted %s", subs[0].Derivation, drv)
		}
		app = subs[0]
		n := m.node("b1")
		builds := map[string]*api.Build{} // by derivation
		defer func() {
			if t.Failed() {
				for _, s := range subs {
					t.Logf("%s: %+v", filepath.Base(s.Derivation), getBuild(t, n, s.ID))
				}
			}
		}()
		for _, s := range subs {
			b := waitState(t, n, s.ID, 3*time.Minute, consensus.StateSucceeded, consensus.StateFailed, consensus.StateCanceled)
			if b.State != consensus.StateSucceeded {
				t.Fatalf("build %s of %s ended %s: %s", b.ID, b.Derivation, b.State, b.Error)
			}
			if len(b.Outputs) == 0 {
				t.Fatalf("succeeded build %s lists no outputs", b.ID)
			}
			builds[b.Derivation] = b
		}

		t.Run("inputs finish before dependents start", func(t *testing.T) {
			for p, b := range builds {
				d := readClientDrv(t, client, p)
				last := b.Attempts[len(b.Attempts)-1]
				for _, in := range d.InputDrvPaths() {
					ib := builds[in]
					if ib == nil {
						t.Fatalf("no build for input %s of %s", in, p)
					}
					if ib.FinishedAt == nil || last.StartedAt.Before(*ib.FinishedAt) {
						t.Errorf("%s started at %s, before its input %s finished at %v",
							filepath.Base(p), last.StartedAt, filepath.Base(in), ib.FinishedAt)
					}
				}
			}
		})

		// The same graph built by plain Nix, for the byte-exact check.
		local := filepath.Join(m.dir, "local")
		ldrv := m.instantiate(local, "../examples/graph.nix", "app", "--argstr", "salt", salt)
		if ldrv != drv {
			t.Fatalf("local instantiation gave %s, the client's %s", ldrv, drv)
		}
		m.nix(local, "", "nix-store", "--store", "local?root="+local, "--realise", drv)

		t.Run("a nix client substitutes every output from a node that did not build it", func(t *testing.T) {
			key, err := m.cli("key", "--server", n.URL())
			if err != nil {
				t.Fatal(err)
			}
			key = strings.TrimSpace(key)
			for p, b := range builds {
				from := m.nodeOtherThan(b.Node)
				root := filepath.Join(m.dir, "subst-"+store.HashPart(p))
				conf := fmt.Sprintf("substituters = %s\ntrusted-public-keys = %s\nrequire-sigs = true\n", from.URL(), key)
				for _, o := range b.Outputs {
					// --max-jobs 0: substitute or fail, never build.
					m.nix(root, conf, "nix-store", "--store", "local?root="+root, "--max-jobs", "0", "--realise", o.Path)
					got, _, err := store.NarHashPath(root + o.Path)
					if err != nil {
						t.Fatalf("%s from %s: %v", o.Path, from.Name(), err)
					}
					want, _, err := store.NarHashPath(local + o.Path)
					if err != nil {
						t.Fatalf("local build of %s: %v", o.Path, err)
					}
					if !got.Equal(want) || got.String() != o.NarHash {
						t.Errorf("%s: substituted from %s %s, local build %s, build record %s", o.Path, from.Name(), got, want, o.NarHash)
					}
				}
			}
		})
	})

	t.Run("narinfo references are the ones the daemon registers", func(t *testing.T) {
		local := filepath.Join(m.dir, "local")
		st := m.node("b1").raft.State()
		refsSeen := 0
		bs, err := st.ListBuilds(consensus.BuildFilter{State: consensus.StateSucceeded})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bs {
			for _, o := range b.Outputs {
				if _, err := os.Lstat(local + o.Path); err != nil {
					continue // not of the graph built locally
				}
				out := m.nix(local, "", "nix-store", "--store", "local?root="+local, "--query", "--references", o.Path)
				var want []string
				for _, r := range strings.Fields(out) {
					want = append(want, filepath.Base(r))
				}
				slices.Sort(want)
				ni, err := st.NarInfoByHash(store.HashPart(o.Path))
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(ni.References, want) {
					t.Errorf("%s: mesh narinfo references %v, nix registered %v", o.Path, ni.References, want)
				}
				refsSeen += len(want)
			}
		}
		if refsSeen == 0 {
			t.Fatal("no output refers to anything: the graph no longer covers references")
		}
	})

	t.Run("ignore if built", func(t *testing.T) {
		if app.ID == "" {
			t.Skip("the graph did not build")
		}
		subs := m.submit(m.node("b3"), client, []string{"--ignore-if-built"}, app.Derivation)
		if len(subs) != 1 || subs[0].ID != app.ID {
			t.Fatalf("submit --ignore-if-built = %+v, want the existing build %s", subs, app.ID)
		}
		again := m.submit(m.node("b3"), client, nil, app.Derivation)
		if len(again) != 1 || again[0].ID == app.ID {
			t.Fatalf("submit without --ignore-if-built = %+v, want a new build", again)
		}
		waitState(t, m.node("b3"), again[0].ID, time.Minute, consensus.StateSucceeded)
	})

	t.Run("failing derivation", func(t *testing.T) {
		drv := m.instantiate(client, testdata, "fail", "--argstr", "salt", salt)
		subs := m.submit(m.node("b1"), client, []string{"--retries", "0"}, drv)
		b := waitState(t, m.node("b1"), subs[0].ID, time.Minute, consensus.StateFailed, consensus.StateSucceeded)
		if b.State != consensus.StateFailed || b.Error == "" {
			t.Fatalf("build of a failing derivation ended %s, error %q", b.State, b.Error)
		}
		msg := "drvmesh-test-failure-" + salt
		from := m.nodeOtherThan(b.Node)
		code, body := adminGet(t, from, "/api/v1/builds/"+b.ID+"/log")
		if code != http.StatusOK || !strings.Contains(string(body), msg) {
			t.Errorf("build log through %s (built on %s) = %d, without %q:\n%s", from.Name(), b.Node, code, msg, body)
		}
		code, body = adminGet(t, from, "/log/"+filepath.Base(drv))
		if code != http.StatusOK || !strings.Contains(string(body), msg) {
			t.Errorf("/log/%s = %d, without %q:\n%s", filepath.Base(drv), code, msg, body)
		}
	})

	t.Run("cancel a running build", func(t *testing.T) {
		s := salt + "-cancel"
		drv := m.instantiate(client, testdata, "sleeper", "--argstr", "salt", s)
		marker := "drvmesh-sleep-" + s
		subs := m.submit(m.node("b1"), client, nil, drv)
		id := subs[0].ID
		waitState(t, m.node("b1"), id, time.Minute, consensus.StateBuilding)
		testutil.Eventually(t, time.Minute, "the sleeping builder runs", func() bool { return len(markerProcs(marker)) > 0 })
		code, body := httpDo(t, http.MethodPost, apiURL(m.node("b2"), "/api/v1/cancel"), m.token, strings.NewReader(`{"ids":["`+id+`"]}`))
		if code != http.StatusOK {
			t.Fatalf("cancel = %d %s", code, body)
		}
		b := waitState(t, m.node("b3"), id, 10*time.Second, consensus.StateCanceled, consensus.StateSucceeded, consensus.StateFailed)
		if b.State != consensus.StateCanceled {
			t.Fatalf("canceled build ended %s", b.State)
		}
		testutil.Eventually(t, 30*time.Second, "the canceled builder is gone", func() bool { return len(markerProcs(marker)) == 0 })
	})

	t.Run("missing input", func(t *testing.T) {
		s := salt + "-missing"
		dep := m.instantiate(client, testdata, "dependent", "--argstr", "salt", s)
		in := m.instantiate(client, testdata, "input", "--argstr", "salt", s)
		subs := m.submit(m.node("b2"), client, nil, dep)
		if len(subs) != 1 {
			t.Fatalf("submit without --closure made %d builds, want 1", len(subs))
		}
		n := m.node("b2")
		var inputID string
		testutil.Eventually(t, 2*time.Minute, "a build of the missing input", func() bool {
			bs, _ := n.raft.State().BuildsByDerivation(in)
			if len(bs) > 0 {
				inputID = bs[0].ID
			}
			return inputID != ""
		})
		ib := waitState(t, n, inputID, 2*time.Minute, consensus.StateSucceeded, consensus.StateFailed)
		b := waitState(t, n, subs[0].ID, 2*time.Minute, consensus.StateSucceeded, consensus.StateFailed)
		if ib.State != consensus.StateSucceeded || b.State != consensus.StateSucceeded {
			t.Fatalf("input build %s, dependent %s (%s)", ib.State, b.State, b.Error)
		}
		results := []string{}
		for _, a := range b.Attempts {
			results = append(results, string(a.Result))
		}
		if !slices.Contains(results, consensus.ResultMissingInputs) {
			t.Errorf("dependent's attempts %v: none reported the missing input", results)
		}
		if last := b.Attempts[len(b.Attempts)-1]; ib.FinishedAt == nil || last.StartedAt.Before(*ib.FinishedAt) {
			t.Errorf("dependent's last attempt started %s, before its input finished %v", last.StartedAt, ib.FinishedAt)
		}
	})

	t.Run("a build whose input failed for good fails too", func(t *testing.T) {
		s := salt + "-broken"
		dep := m.instantiate(client, testdata, "afterBroken", "--argstr", "salt", s)
		in := m.instantiate(client, testdata, "brokenInput", "--argstr", "salt", s)
		subs := m.submit(m.node("b3"), client, []string{"--closure", "--retries", "0"}, dep)
		if len(subs) != 2 {
			t.Fatalf("submit --closure made %d builds, want 2", len(subs))
		}
		n := m.node("b1")
		b := waitState(t, n, subs[0].ID, 2*time.Minute, consensus.StateFailed, consensus.StateSucceeded, consensus.StateCanceled)
		if b.State != consensus.StateFailed || !strings.Contains(b.Error, in) {
			t.Fatalf("dependent of a failed input ended %s, error %q (want failed, naming %s)", b.State, b.Error, in)
		}
		if ib := getBuild(t, n, subs[1].ID); ib.State != consensus.StateFailed {
			t.Fatalf("the failing input ended %s", ib.State)
		}
	})

	t.Run("building node crashes", func(t *testing.T) {
		s := salt + "-crash"
		drv := m.instantiate(client, testdata, "sleeper", "--argstr", "salt", s, "--argstr", "seconds", "3")
		marker := "drvmesh-sleep-" + s
		subs := m.submit(m.node("b1"), client, nil, drv)
		id := subs[0].ID
		b := waitState(t, m.node("b1"), id, time.Minute, consensus.StateBuilding)
		testutil.Eventually(t, time.Minute, "the sleeping builder runs", func() bool { return len(markerProcs(marker)) > 0 })
		victim := b.Node
		m.kill(victim)
		survivor := m.nodeOtherThan(victim)
		b = waitState(t, survivor, id, 2*time.Minute, consensus.StateSucceeded, consensus.StateFailed, consensus.StateCanceled)
		if b.State != consensus.StateSucceeded || b.Node == victim {
			t.Fatalf("build ended %s on %s after %s crashed: %s", b.State, b.Node, victim, b.Error)
		}
		if len(b.Attempts) < 2 || b.Attempts[0].Node != victim || b.Attempts[0].Result != consensus.ResultLost {
			t.Errorf("attempts %+v: want a lost one on %s, then one elsewhere", b.Attempts, victim)
		}
	})
}

// readClientDrv parses a .drv from the client's chroot store.
func readClientDrv(t *testing.T, root, p string) *store.Derivation {
	t.Helper()
	b, err := os.ReadFile(root + p)
	if err != nil {
		t.Fatal(err)
	}
	d, err := store.ParseDerivation(b)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	return d
}
