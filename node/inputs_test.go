package node

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drvmesh/drvmesh/api"
	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/internal/testutil"
	"github.com/drvmesh/drvmesh/node/httpapi"
)

// heapSampler records the largest heap in use while it runs: the peak a
// request cost, not what survived it.
type heapSampler struct {
	base uint64
	peak uint64
	stop chan struct{}
	wg   sync.WaitGroup
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func startHeapSampler() *heapSampler {
	s := &heapSampler{base: heapInUse(), stop: make(chan struct{})}
	s.peak = s.base
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			s.peak = max(s.peak, ms.HeapInuse)
			select {
			case <-s.stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	return s
}

// growth stops the sampler and returns the peak growth over the start.
func (s *heapSampler) growth() uint64 {
	close(s.stop)
	s.wg.Wait()
	return s.peak - s.base
}

// hostile sends one hostile request to n and checks it is refused with
// want, that the node's heap grew by less than bound meanwhile, and that
// the replicated state did not change.
func hostile(t *testing.T, n *Node, want int, bound uint64, send func() (int, []byte)) []byte {
	t.Helper()
	settle(t, n)
	before, err := n.raft.State().Digest()
	if err != nil {
		t.Fatal(err)
	}
	hs := startHeapSampler()
	code, body := send()
	grew := hs.growth()
	if code != want {
		t.Fatalf("answered %d %s, want %d", code, body, want)
	}
	// The API answers an error body; the server's own body limit, which
	// refuses by Content-Length before the API runs, answers plain text.
	var e api.ErrorResponse
	if json.Unmarshal(body, &e) != nil {
		e.Message = strings.TrimSpace(string(body))
	}
	if e.Message == "" {
		t.Errorf("refusal %q says nothing", body)
	}
	if grew > bound {
		t.Errorf("heap grew by %d MiB while refusing, want under %d MiB", grew>>20, bound>>20)
	}
	after, err := n.raft.State().Digest()
	if err != nil || after != before {
		t.Errorf("state digest changed (%v): %s → %s", err, before, after)
	}
	return body
}

// wireStr is s as an export stream writes a string: its length, the
// bytes and zero padding to 8 bytes.
func wireStr(s string) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(s)))
	b = append(b, s...)
	return append(b, make([]byte, (8-len(s)%8)%8)...)
}

// settle waits until n's state stops changing (the leader's duties
// answer a new build or node with writes of their own).
func settle(t *testing.T, n *Node) {
	t.Helper()
	last, stable := "", time.Time{}
	testutil.Eventually(t, 20*time.Second, "the state settles", func() bool {
		d, err := n.raft.State().Digest()
		if err != nil || d != last {
			last, stable = d, time.Now()
			return false
		}
		return time.Since(stable) > 300*time.Millisecond
	})
}

// narFilesOn lists the files under n's nar directory.
func narFilesOn(t *testing.T, n *Node) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(n.cfg.DataDir, dirNars), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestNode_PublicInputs sends a real node what a hostile client would to
// each public input: each is refused early with a clear 4xx, costs
// bounded memory and changes nothing.
func TestNode_PublicInputs(t *testing.T) {
	m := newTestMesh(t)
	n := m.bootstrap("n1", func(c *Config) { c.MaxUpload = 1 << 20 })
	token := m.adminToken("n1")
	waitSettled(t, m, []string{"n1"})
	const bound = 32 << 20

	t.Run("paths/missing", func(t *testing.T) { testMissingLimits(t, n, token, bound) })
	t.Run("builds list", func(t *testing.T) { testBuildsPaging(t, n, token, bound) })
	t.Run("uploads", func(t *testing.T) { testUploadLimits(t, n, token, bound) })
}

// testMissingLimits: paths/missing needs the token and bounds its body
// and path count.
func testMissingLimits(t *testing.T, n *Node, token string, bound uint64) {
	body := func(paths int) []byte {
		var b bytes.Buffer
		b.WriteString(`{"paths":[`)
		for i := range paths {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"/nix/store/%032d-p"`, i)
		}
		b.WriteString(`]}`)
		return b.Bytes()
	}
	missing := func(tok string, b []byte) func() (int, []byte) {
		return func() (int, []byte) {
			return httpDo(t, http.MethodPost, apiURL(n, "/api/v1/paths/missing"), tok, bytes.NewReader(b))
		}
	}
	small := body(3)
	hostile(t, n, http.StatusUnauthorized, bound, missing("", small))
	hostile(t, n, http.StatusRequestEntityTooLarge, bound, missing(token, body(httpapi.MaxMissingPaths+1)))
	huge := append([]byte(`{"paths":["`), bytes.Repeat([]byte("x"), httpapi.MaxMissingBody)...)
	hostile(t, n, http.StatusRequestEntityTooLarge, bound, missing(token, append(huge, `"]}`...)))
	long := []byte(`{"paths":["/nix/store/` + strings.Repeat("x", 4096) + `"]}`)
	hostile(t, n, http.StatusBadRequest, bound, missing(token, long))
	if code, b := missing(token, small)(); code != http.StatusOK || !strings.Contains(string(b), `"missing":[`) {
		t.Fatalf("a fair request: %d %s", code, b)
	}
}

// testBuildsPaging: the build list needs the token, caps its limit and
// pages with a cursor through filters.
func testBuildsPaging(t *testing.T, n *Node, token string, bound uint64) {
	var builds []consensus.Build
	start := time.Now()
	for i := range 7 {
		sys := "test-a" // systems no node builds for: the builds stay queued
		if i%2 == 1 {
			sys = "test-b"
		}
		// Distinct, ordered ids: a millisecond apart.
		at := start.Add(time.Duration(i) * time.Millisecond)
		builds = append(builds, consensus.Build{ID: consensus.NewBuildID(at), Derivation: fakeDrv(900 + i%3), System: sys, State: consensus.StateQueued})
	}
	applyVia(t, n, &consensus.SubmitBuilds{Builds: builds})
	list := func(tok, query string) func() (int, []byte) {
		return func() (int, []byte) {
			return httpDo(t, http.MethodGet, apiURL(n, "/api/v1/builds?"+query), tok, nil)
		}
	}
	hostile(t, n, http.StatusUnauthorized, bound, list("", "limit=5"))
	hostile(t, n, http.StatusBadRequest, bound, list(token, "limit=0"))
	hostile(t, n, http.StatusBadRequest, bound, list(token, "limit=1001"))
	hostile(t, n, http.StatusBadRequest, bound, list(token, "after=nope"))

	page := func(query string) ([]api.Build, string) {
		req, _ := http.NewRequest(http.MethodGet, apiURL(n, "/api/v1/builds?"+query), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		bs, err := decodeStrict[[]api.Build](b)
		if resp.StatusCode != http.StatusOK || err != nil {
			t.Fatalf("list %s: %d %s (%v)", query, resp.StatusCode, b, err)
		}
		return bs, resp.Header.Get(httpapi.NextCursorHeader)
	}
	var got []string
	for after, pages := "", 0; ; pages++ {
		bs, next := page("limit=3&after=" + after)
		for _, b := range bs {
			got = append(got, b.ID)
		}
		if next == "" {
			break
		}
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		after = next
	}
	var want []string
	for i := len(builds) - 1; i >= 0; i-- {
		want = append(want, builds[i].ID)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("pages of 3 gave\n%v\nwant newest first\n%v", got, want)
	}
	if bs, _ := page(""); len(bs) != len(builds) {
		t.Errorf("the default page has %d builds, want all %d", len(bs), len(builds))
	}
	for query, want := range map[string]int{
		"system=test-b":                           3,
		"derivation=" + fakeDrv(900):              3,
		"derivation=" + fakeDrv(901) + "&limit=1": 1,
		"node=elsewhere":                          0,
		"system=test-a&state=queued":              4,
	} {
		if bs, _ := page(query); len(bs) != want {
			t.Errorf("%s: %d builds, want %d", query, len(bs), want)
		}
	}
}

// testUploadLimits: imports bound references and paths before reading
// them, uploads bound their size, and a refused upload keeps no file.
func testUploadLimits(t *testing.T, n *Node, token string, bound uint64) {
	files := len(narFilesOn(t, n))
	src := sourceWithRefs(t, "fine", "content")
	importOf := func(stream []byte) func() (int, []byte) {
		return func() (int, []byte) {
			return httpDo(t, http.MethodPost, apiURL(n, "/api/v1/nars/import"), token, bytes.NewReader(stream))
		}
	}
	manyRefs := src
	for i := range httpapi.MaxReferences + 1 {
		manyRefs.info.References = append(manyRefs.info.References, fmt.Sprintf("/nix/store/%032d-r", i))
	}
	msg := hostile(t, n, http.StatusBadRequest, bound, importOf(exportStream(t, manyRefs)))
	if !strings.Contains(string(msg), fmt.Sprintf("has %d references", httpapi.MaxReferences+1)) {
		t.Errorf("refusal of %d references: %s", httpapi.MaxReferences+1, msg)
	}
	longRef := src
	longRef.info.References = []string{"/nix/store/" + strings.Repeat("r", 4096)}
	if msg := hostile(t, n, http.StatusBadRequest, bound, importOf(exportStream(t, longRef))); !strings.Contains(string(msg), "too long") {
		t.Errorf("refusal of a 4 KiB reference: %s", msg)
	}
	// A trailer that claims 2^20 references of 4 KiB is refused at the
	// count, before anything of that size is read or allocated.
	claim := exportStream(t, src)
	claim = claim[:len(claim)-8] // the end marker
	claim = claim[:bytes.LastIndex(claim, wireStr(src.info.Path))+len(wireStr(src.info.Path))]
	claim = binary.LittleEndian.AppendUint64(claim, 1<<20)
	for range 16 {
		claim = append(claim, wireStr("/nix/store/"+strings.Repeat("r", 4085))...)
	}
	if msg := hostile(t, n, http.StatusBadRequest, bound, importOf(claim)); !strings.Contains(string(msg), "1048576 references") {
		t.Errorf("refusal of 2^20 references: %s", msg)
	}

	big := sourceWithRefs(t, "big", strings.Repeat("b", 2<<20))
	hostile(t, n, http.StatusRequestEntityTooLarge, bound, importOf(exportStream(t, big)))
	put := func(p exportPath, body io.Reader) func() (int, []byte) {
		return func() (int, []byte) {
			return httpDo(t, http.MethodPut, apiURL(n, "/api/v1/nars?path="+p.info.Path), token, body)
		}
	}
	// Refused by its Content-Length before a byte is read, and while
	// streaming when it sends no length.
	hostile(t, n, http.StatusRequestEntityTooLarge, bound, put(big, bytes.NewReader(big.nar)))
	hostile(t, n, http.StatusRequestEntityTooLarge, bound, put(big, io.MultiReader(bytes.NewReader(big.nar))))
	// Within the limit but not the path it claims.
	liar := src
	liar.info.Path = sourceWithRefs(t, "liar", "other content").info.Path
	hostile(t, n, http.StatusBadRequest, bound, put(liar, bytes.NewReader(src.nar)))
	if left := narFilesOn(t, n); len(left) != files {
		t.Fatalf("refused uploads left files behind: %v", left)
	}
	if code, b := put(src, bytes.NewReader(src.nar))(); code != http.StatusOK {
		t.Fatalf("a fair upload: %d %s", code, b)
	}
}

// TestNode_PublicRead checks what an anonymous client may read under each
// --public-read setting.
func TestNode_PublicRead(t *testing.T) {
	m := newTestMesh(t)
	n := m.bootstrap("n1", nil)
	token := m.adminToken("n1")
	waitSettled(t, m, []string{"n1"})
	public := []string{"/api/v1/status", "/api/v1/key", "/nix-cache-info"}
	protected := []string{"/api/v1/nodes", "/api/v1/builds", "/api/v1/builds/" + strings.Repeat("0", 32),
		"/api/v1/builds/" + strings.Repeat("0", 32) + "/log", "/log/" + filepath.Base(fakeDrv(1)), "/metrics", "/"}
	get := func(n *Node, path, tok string) (int, []byte) {
		return httpDo(t, http.MethodGet, apiURL(n, path), tok, nil)
	}
	t.Run("cache (the default)", func(t *testing.T) {
		for _, p := range public {
			if code, b := get(n, p, ""); code != http.StatusOK {
				t.Errorf("anonymous %s: %d %s, want 200", p, code, b)
			}
		}
		for _, p := range protected {
			code, b := get(n, p, "")
			if code != http.StatusUnauthorized || !strings.Contains(string(b), "admin token") {
				t.Errorf("anonymous %s: %d %s, want 401 naming the admin token", p, code, b)
			}
			if code, b := get(n, p, "wrong"); code != http.StatusUnauthorized {
				t.Errorf("%s with a wrong token: %d %s, want 401", p, code, b)
			}
			if code, b := get(n, p, token); code == http.StatusUnauthorized {
				t.Errorf("%s with the admin token: %d %s", p, code, b)
			}
		}
		if _, b := get(n, "/api/v1/status", ""); strings.Contains(string(b), "127.0.0.1") {
			t.Errorf("public status shows addresses: %s", b)
		}
	})
	t.Run("all", func(t *testing.T) {
		o := m.join("open", func(c *Config) { c.PublicRead = "all" })
		for _, p := range append(public, "/api/v1/nodes", "/api/v1/builds", "/metrics", "/") {
			if code, b := get(o, p, ""); code != http.StatusOK {
				t.Errorf("anonymous %s: %d %s, want 200", p, code, b)
			}
		}
		var code int
		testutil.Eventually(t, 20*time.Second, "the new node has the mesh's settings", func() bool {
			code, _ = httpDo(t, http.MethodPost, apiURL(o, "/api/v1/cancel"), "", strings.NewReader(`{"ids":["x"]}`))
			return code != http.StatusServiceUnavailable
		})
		if code != http.StatusUnauthorized {
			t.Errorf("anonymous cancel on a public-read node: %d, want 401", code)
		}
		// n keeps its node list from anonymous readers, yet a member
		// finds n's gossip address through it, on the cluster port.
		testutil.Eventually(t, 20*time.Second, "o reads n's node list over the cluster port", func() bool {
			return slices.Contains(o.peers.FromState(context.Background()), n.gossipAdvertise())
		})
	})
	t.Run("a bad setting", func(t *testing.T) {
		if _, err := New(m.config("bad", func(c *Config) { c.PublicRead = "some" })); err == nil {
			t.Fatal("--public-read some was taken")
		}
	})
}
