package node

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/gossip"
	"github.com/drvmesh/drvmesh/internal/testutil"
	"github.com/drvmesh/drvmesh/store"
)

// srcNar is a small source tree as a content-addressed store path.
type srcNar struct {
	path     string
	hashPart string
	nar      []byte
	narHash  store.Hash
}

// makeSource writes a tiny tree and computes its source path and NAR.
func makeSource(t *testing.T, name, content string) srcNar {
	t.Helper()
	root := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(filepath.Join(root, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "a.txt"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "sub", "b.txt"), []byte(strings.Repeat(content, 50)), 0o644); err != nil {
		t.Fatal(err)
	}
	h, _, err := store.NarHashPath(root)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := store.DumpPath(&buf, root); err != nil {
		t.Fatal(err)
	}
	p := store.MakeSourcePath("/nix/store", name, h, nil, false)
	hp, err := consensus.HashPart(p)
	if err != nil {
		t.Fatal(err)
	}
	return srcNar{path: p, hashPart: hp, nar: buf.Bytes(), narHash: h}
}

// putNar uploads body as the NAR of path with the claimed hash and size.
func putNar(t *testing.T, n *Node, token, path string, narHash store.Hash, size int, body []byte) (int, []byte) {
	t.Helper()
	q := url.Values{"path": {path}, "nar_hash": {narHash.String()}, "nar_size": {strconv.Itoa(size)}}
	return httpDo(t, http.MethodPut, apiURL(n, "/api/v1/nars?"+q.Encode()), token, bytes.NewReader(body))
}

// uploadSrc puts a source nar into the mesh through n.
func uploadSrc(t *testing.T, n *Node, token string, s srcNar) {
	t.Helper()
	if code, body := putNar(t, n, token, s.path, s.narHash, len(s.nar), s.nar); code != http.StatusOK {
		t.Fatalf("upload %s: %d %s", s.path, code, body)
	}
}

// narRecord is a nar's index record as n sees it (nil when absent).
func narRecord(n *Node, hashPart string) *consensus.NarInfo {
	ni, err := n.raft.State().NarInfoByHash(hashPart)
	if err != nil {
		return nil
	}
	return ni
}

// narKey is the file key of a nar's first stored form.
func narKey(t *testing.T, ni *consensus.NarInfo) string {
	t.Helper()
	if len(ni.Files) == 0 {
		t.Fatalf("%s has no files", ni.StorePath)
	}
	h, err := store.ParseHash(ni.Files[0].FileHash)
	if err != nil {
		t.Fatal(err)
	}
	return h.Nix32()
}

// narOnDisk reports whether n keeps the zstd file with this key, both in its
// disk index and as a file in DATA_DIR/nars/nar.
func narOnDisk(n *Node, key string) bool {
	_, err := os.Stat(narFilePath(n, key))
	return n.disk.Has(key) && err == nil
}

func narFilePath(n *Node, key string) string {
	return filepath.Join(n.cfg.DataDir, dirNars, "nar", key+".nar.zst")
}

// narDirEntries lists the names in n's nar directory, temp files included.
func narDirEntries(t *testing.T, n *Node) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(n.cfg.DataDir, dirNars, "nar"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// badPeerCount scrapes n's bad-peer counter from /metrics.
func badPeerCount(t *testing.T, n *Node) float64 {
	t.Helper()
	code, body := adminGet(t, n, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("metrics: %d", code)
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "drvmesh_bad_peer_nars_total "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatal("no drvmesh_bad_peer_nars_total in /metrics")
	return 0
}

// aliveMembers counts the members n's gossip sees alive.
func aliveMembers(n *Node) int {
	c := 0
	for _, mb := range n.gossip.Members() {
		if mb.Status == gossip.StatusAlive {
			c++
		}
	}
	return c
}

// aliveHolders counts a nar's holders that n's gossip sees alive.
func aliveHolders(n *Node, ni *consensus.NarInfo) int {
	c := 0
	for _, h := range ni.Holders {
		if mb, ok := n.gossip.Member(h); ok && mb.Status == gossip.StatusAlive {
			c++
		}
	}
	return c
}

// waitSettled waits until every named node is a voter, sees the others
// alive and has the mesh settings, so that writes do not race the
// membership changes of a young mesh.
func waitSettled(t *testing.T, m *testMesh, names []string) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, fmt.Sprintf("%d voters", len(names)), func() bool {
		return len(m.waitLeader().api.Status().Voters) == len(names)
	})
	for _, nm := range names {
		nd := m.node(nm)
		testutil.Eventually(t, 20*time.Second, nm+" sees every member alive and the settings", func() bool {
			st, err := nd.raft.State().Settings()
			return err == nil && st.AdminTokenHash != "" && aliveMembers(nd) == len(names)
		})
	}
}

// pickOther returns the first of names not in skip.
func pickOther(names []string, skip ...string) string {
	for _, nm := range names {
		if !slices.Contains(skip, nm) {
			return nm
		}
	}
	return ""
}

func TestNode_Replicate(t *testing.T) {
	m := newTestMesh(t)
	m.bootstrap("n1", nil)
	m.join("n2", nil)
	m.join("n3", nil)
	token := m.adminToken("n1")
	names := []string{"n1", "n2", "n3"}
	waitSettled(t, m, names)
	leader := m.waitLeader()

	// holdersWithFile waits until the nar has want holders, each keeping
	// the file, and returns them.
	holdersWithFile := func(t *testing.T, s srcNar, want int) []string {
		t.Helper()
		var holders []string
		testutil.Eventually(t, 20*time.Second, fmt.Sprintf("%s on %d nodes", s.path, want), func() bool {
			ni := narRecord(leader, s.hashPart)
			if ni == nil || len(ni.Holders) != want {
				return false
			}
			key := narKey(t, ni)
			for _, h := range ni.Holders {
				if nd := m.node(h); nd == nil || !narOnDisk(nd, key) {
					return false
				}
			}
			holders = ni.Holders
			return true
		})
		return holders
	}

	t.Run("upload lands on two nodes", func(t *testing.T) {
		s := makeSource(t, "two-copies", "hello mesh\n")
		uploadSrc(t, m.node("n2"), token, s)
		holders := holdersWithFile(t, s, 2)
		if !slices.Contains(holders, "n2") {
			t.Errorf("holders %v lack the uploading node n2", holders)
		}
		// Every node's index agrees, and the copy is the same nar.
		for _, nm := range names {
			nd := m.node(nm)
			testutil.Eventually(t, 10*time.Second, nm+" sees two holders", func() bool {
				ni := narRecord(nd, s.hashPart)
				return ni != nil && len(ni.Holders) == 2
			})
		}
		key := narKey(t, narRecord(leader, s.hashPart))
		for _, h := range holders {
			rc, _, err := m.node(h).disk.OpenNar(key)
			if err != nil {
				t.Fatalf("open nar on %s: %v", h, err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(got, s.nar) {
				t.Errorf("%s keeps a different nar (err %v)", h, err)
			}
		}
	})

	t.Run("wrong uploads refused", func(t *testing.T) {
		n := m.node("n3")
		good := makeSource(t, "refused", "refused content\n")
		other := makeSource(t, "refused", "other content\n")
		badMagic := append([]byte(nil), good.nar...)
		copy(badMagic[8:], "not-a-nar-magic")
		before := map[string][]string{}
		for _, nm := range names {
			before[nm] = narDirEntries(t, m.node(nm))
		}
		cases := []struct {
			name    string
			path    string
			narHash store.Hash
			body    []byte
		}{
			{"nar hash mismatch", good.path, other.narHash, good.nar},
			{"path not content-addressed by the bytes", other.path, good.narHash, good.nar},
			{"bad magic", good.path, good.narHash, badMagic},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				code, body := putNar(t, n, token, c.path, c.narHash, len(c.body), c.body)
				if code != http.StatusBadRequest {
					t.Fatalf("upload = %d %s, want 400", code, body)
				}
			})
		}
		for _, s := range []srcNar{good, other} {
			if ni := narRecord(n, s.hashPart); ni != nil {
				t.Errorf("refused upload %s recorded: %+v", s.path, ni)
			}
		}
		for _, nm := range names {
			if got := narDirEntries(t, m.node(nm)); !slices.Equal(got, before[nm]) {
				t.Errorf("%s nar dir changed by refused uploads: %v, was %v", nm, got, before[nm])
			}
		}
	})

	t.Run("corrupt peer refused", func(t *testing.T) {
		s := makeSource(t, "corrupt", "bytes that will rot\n")
		uploadSrc(t, leader, token, s)
		holders := holdersWithFile(t, s, 2)
		key := narKey(t, narRecord(leader, s.hashPart))
		bad := leader.Name()
		second := pickOther(holders, bad)
		fetcher := m.node(pickOther(names, holders...))
		if second == "" || fetcher == nil {
			t.Fatalf("holders %v: want the leader %s and one other", holders, bad)
		}
		// Leave the corrupted holder the only one.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := m.node(second).apply(ctx, &consensus.SetNarHolder{Hash: s.hashPart, Node: second, Present: false}); err != nil {
			t.Fatal(err)
		}
		if err := m.node(second).disk.Remove(key); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 10*time.Second, fetcher.Name()+" sees one holder", func() bool {
			ni := narRecord(fetcher, s.hashPart)
			return ni != nil && slices.Equal(ni.Holders, []string{bad})
		})
		fp := narFilePath(leader, key)
		b, err := os.ReadFile(fp)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0xff
		if err := os.WriteFile(fp, b, 0o644); err != nil {
			t.Fatal(err)
		}
		badBefore := badPeerCount(t, fetcher)
		entriesBefore := narDirEntries(t, fetcher)

		// As Nix does: the narinfo first, then the nar it names.
		code, body := httpDo(t, http.MethodGet, apiURL(fetcher, "/"+s.hashPart+".narinfo"), "", nil)
		if code != http.StatusOK || !bytes.Contains(body, []byte("URL: nar/"+key+".nar.zst")) {
			t.Fatalf("narinfo = %d %s", code, body)
		}
		resp, err := http.Get(apiURL(fetcher, "/nar/"+key+".nar.zst"))
		if err == nil {
			got, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && rerr == nil {
				t.Fatalf("corrupt nar served whole: %d bytes, status %d", len(got), resp.StatusCode)
			}
		}
		testutil.Eventually(t, 10*time.Second, "bad peer counted on "+fetcher.Name(), func() bool {
			return badPeerCount(t, fetcher) > badBefore
		})
		if fetcher.disk.Has(key) {
			t.Errorf("%s kept the corrupt nar", fetcher.Name())
		}
		if got := narDirEntries(t, fetcher); !slices.Equal(got, entriesBefore) {
			t.Errorf("%s nar dir changed: %v, was %v", fetcher.Name(), got, entriesBefore)
		}
		if ni := narRecord(leader, s.hashPart); ni == nil || slices.Contains(ni.Holders, fetcher.Name()) {
			t.Errorf("index after the refused fetch: %+v", ni)
		}
	})

	t.Run("dead holder re-replicated", func(t *testing.T) {
		s := makeSource(t, "survivor", "keep two copies\n")
		uploadSrc(t, leader, token, s)
		holders := holdersWithFile(t, s, 2)
		key := narKey(t, narRecord(leader, s.hashPart))
		victim := pickOther(holders, leader.Name())
		spare := m.node(pickOther(names, holders...))
		if victim == "" || spare == nil {
			t.Fatalf("holders %v: want the leader %s and one other", holders, leader.Name())
		}
		if narOnDisk(spare, key) {
			t.Fatalf("%s holds the nar before the kill", spare.Name())
		}
		m.kill(victim)
		// The copy count counts alive holders only: wait until the leader
		// sees the victim gone and two alive holders, one of them the
		// survivor that lacked the nar.
		testutil.Eventually(t, 30*time.Second, "copy restored on "+spare.Name(), func() bool {
			ni := narRecord(leader, s.hashPart)
			mb, known := leader.gossip.Member(victim)
			return ni != nil && known && mb.Status != gossip.StatusAlive &&
				slices.Contains(ni.Holders, spare.Name()) && narOnDisk(spare, key) &&
				aliveHolders(leader, ni) == 2
		})
		if !narOnDisk(leader, key) {
			t.Errorf("the leader lost its copy")
		}
	})
}
