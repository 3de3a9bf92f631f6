package node

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/drvmesh/drvmesh/api"
	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/internal/testutil"
	"github.com/drvmesh/drvmesh/store"
)

// drvChain makes n derivations, each depending on the one before, as
// .drv paths ready to import, first to last.
func drvChain(t *testing.T, n int, salt string) []exportPath {
	t.Helper()
	texts := map[string][]byte{}
	load := func(p string) ([]byte, error) {
		if b, ok := texts[p]; ok {
			return b, nil
		}
		return nil, fmt.Errorf("no %s", p)
	}
	var out []exportPath
	prev := ""
	for i := range n {
		name := fmt.Sprintf("dedupe-%s-%d", salt, i)
		d := &store.Derivation{
			Outputs:   []store.Output{{Name: "out"}},
			InputDrvs: map[string][]string{},
			Platform:  "x86_64-linux",
			Builder:   "/bin/sh",
			Args:      []string{"-c", "echo " + name + " > $out"},
		}
		env := []store.EnvVar{{Key: "builder", Value: "/bin/sh"}, {Key: "name", Value: name}, {Key: "out", Value: ""}, {Key: "system", Value: "x86_64-linux"}}
		if prev != "" {
			d.InputDrvs[prev] = []string{"out"}
			env = append(env, store.EnvVar{Key: "dep", Value: prev})
		}
		sort.Slice(env, func(i, j int) bool { return env[i].Key < env[j].Key })
		d.Env = env
		if err := store.NewHasher(load).FillOutputPaths(d, "/nix/store", name); err != nil {
			t.Fatal(err)
		}
		text := d.ATerm()
		e := drvWithRefs(t, name+".drv", string(text), d.References()...)
		texts[e.info.Path] = text
		out = append(out, e)
		prev = e.info.Path
	}
	return out
}

// TestNode_SubmitClosureDedupe submits the closure of one derivation
// through every node at once: however the nodes' states lag, each input
// gets one active build, and every answer names that build.
func TestNode_SubmitClosureDedupe(t *testing.T) {
	m := newTestMesh(t)
	m.bootstrap("n1", nil)
	m.join("n2", nil)
	m.join("n3", nil)
	names := []string{"n1", "n2", "n3"}
	waitSettled(t, m, names)
	token := m.adminToken("n1")
	chain := drvChain(t, 6, uniqueSalt(t))
	if code, body := httpDo(t, http.MethodPost, apiURL(m.node("n1"), "/api/v1/nars/import"), token, bytes.NewReader(exportStream(t, chain...))); code != http.StatusOK {
		t.Fatalf("import: %d %s", code, body)
	}
	top := chain[len(chain)-1].info.Path
	for _, nm := range names {
		testutil.Eventually(t, 10*time.Second, nm+" knows the derivations", func() bool {
			return narRecord(m.node(nm), store.HashPart(top)) != nil
		})
	}
	req, _ := json.Marshal(map[string]any{"derivations": []string{top}, "closure": true})
	var wg sync.WaitGroup
	answers := make([][]api.SubmittedBuild, 6*len(names))
	for i := range answers {
		n := m.node(names[i%len(names)])
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body := httpDo(t, http.MethodPost, apiURL(n, "/api/v1/builds"), token, bytes.NewReader(req))
			if code != http.StatusOK {
				// A leader change under the load may refuse a submission;
				// what was recorded must still hold one build per input.
				t.Logf("submit through %s: %d %s", n.Name(), code, body)
				return
			}
			var res struct {
				Builds []api.SubmittedBuild `json:"builds"`
			}
			if err := json.Unmarshal(body, &res); err != nil {
				t.Error(err)
			}
			answers[i] = res.Builds
		}()
	}
	wg.Wait()
	if slices.IndexFunc(answers, func(a []api.SubmittedBuild) bool { return a != nil }) < 0 {
		t.Fatal("no submission was recorded")
	}
	st := m.waitLeader().raft.State()
	for _, e := range chain[:len(chain)-1] {
		bs, err := st.BuildsByDerivation(e.info.Path)
		if err != nil {
			t.Fatal(err)
		}
		var active []string
		for _, b := range bs {
			if !consensus.Finished(b.State) {
				active = append(active, b.ID)
			}
		}
		if len(active) != 1 {
			t.Errorf("%s has %d active builds, want 1", e.info.Path, len(active))
			continue
		}
		for i, a := range answers {
			for _, sb := range a {
				if sb.Derivation == e.info.Path && sb.ID != active[0] {
					t.Errorf("answer %d names build %s of %s, not its active build %s", i, sb.ID, e.info.Path, active[0])
				}
			}
		}
	}
}
