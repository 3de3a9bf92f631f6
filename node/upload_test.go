package node

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/drvmesh/drvmesh/api"
	"github.com/drvmesh/drvmesh/store"
)

// exportPath is one path of an import stream: its NAR and trailer.
type exportPath struct {
	nar  []byte
	info store.ExportInfo
}

// sourceWithRefs makes a source path whose file names refs, so that its
// references are refs, as Nix would find them by scanning.
func sourceWithRefs(t *testing.T, name, content string, refs ...string) exportPath {
	t.Helper()
	f := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(f, []byte(content+strings.Join(refs, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	var nar bytes.Buffer
	if err := store.DumpPath(&nar, f); err != nil {
		t.Fatal(err)
	}
	h, _, err := store.CheckNar(bytes.NewReader(nar.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	p := store.MakeSourcePath("/nix/store", name, h, refs, false)
	return exportPath{nar: nar.Bytes(), info: store.ExportInfo{Path: p, References: refs}}
}

// drvWithRefs makes a .drv text path referring to refs.
func drvWithRefs(t *testing.T, name, text string, refs ...string) exportPath {
	t.Helper()
	f := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(f, []byte(text), 0o444); err != nil {
		t.Fatal(err)
	}
	var nar bytes.Buffer
	if err := store.DumpPath(&nar, f); err != nil {
		t.Fatal(err)
	}
	p := store.MakeTextPath("/nix/store", name, []byte(text), refs)
	return exportPath{nar: nar.Bytes(), info: store.ExportInfo{Path: p, References: refs}}
}

// exportStream writes paths as nix-store --export does.
func exportStream(t *testing.T, paths ...exportPath) []byte {
	t.Helper()
	var b bytes.Buffer
	ew := store.NewExportWriter(&b)
	for _, p := range paths {
		if err := ew.WriteNar(p.info, bytes.NewReader(p.nar)); err != nil {
			t.Fatal(err)
		}
	}
	if err := ew.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// missingPaths asks n which of paths the mesh lacks.
func missingPaths(t *testing.T, n *Node, paths ...string) []string {
	t.Helper()
	req, _ := json.Marshal(map[string]any{"paths": paths})
	code, body := httpDo(t, http.MethodPost, apiURL(n, "/api/v1/paths/missing"), tokenOf(n), bytes.NewReader(req))
	if code != http.StatusOK {
		t.Fatalf("paths/missing: %d %s", code, body)
	}
	var res struct {
		Missing []string `json:"missing"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatal(err)
	}
	return res.Missing
}

func TestNode_UploadImport(t *testing.T) {
	m := newTestMesh(t)
	n := m.bootstrap("n1", nil)
	token := m.adminToken("n1")
	waitSettled(t, m, []string{"n1"})
	post := func(t *testing.T, stream []byte) (int, []byte) {
		t.Helper()
		return httpDo(t, http.MethodPost, apiURL(n, "/api/v1/nars/import"), token, bytes.NewReader(stream))
	}
	// refused posts stream and checks that it is a 4xx whose message says
	// want, and that the mesh and the nar store gained nothing.
	refused := func(t *testing.T, stream []byte, want string, paths ...exportPath) {
		t.Helper()
		files := narDirEntries(t, n)
		code, body := post(t, stream)
		if code != http.StatusBadRequest || !strings.Contains(string(body), want) {
			t.Fatalf("import = %d %s, want 400 saying %q", code, body, want)
		}
		for _, p := range paths {
			if hasNarInfo(n, p.info.Path) {
				t.Errorf("%s recorded by a refused import", p.info.Path)
			}
		}
		if after := narDirEntries(t, n); !reflect.DeepEqual(after, files) {
			t.Errorf("nar files %v after a refused import, were %v", after, files)
		}
	}

	t.Run("a closure in one commit", func(t *testing.T) {
		a := sourceWithRefs(t, "a", "source a\n")
		b := sourceWithRefs(t, "b", "source b refers to ", a.info.Path)
		d := drvWithRefs(t, "x.drv", "Derive-like text naming both", a.info.Path, b.info.Path)
		d2 := drvWithRefs(t, "y.drv", "another", d.info.Path)
		paths := []string{a.info.Path, b.info.Path, d.info.Path, d2.info.Path}
		if got := missingPaths(t, n, paths...); len(got) != len(paths) {
			t.Fatalf("missing before the import: %v", got)
		}
		// The state's own index: it is set before raft answers the apply,
		// raft's own applied index only after.
		before := n.raft.State().AppliedIndex()
		code, body := post(t, exportStream(t, a, b, d, d2))
		after := n.raft.State().AppliedIndex()
		if code != http.StatusOK {
			t.Fatalf("import = %d %s", code, body)
		}
		var res struct {
			Imported []api.NarRecord `json:"imported"`
		}
		if err := json.Unmarshal(body, &res); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range res.Imported {
			got = append(got, r.Path)
		}
		if !slices.Equal(got, paths) {
			t.Errorf("imported %v, want %v", got, paths)
		}
		if miss := missingPaths(t, n, paths...); len(miss) != 0 {
			t.Errorf("missing after the import: %v", miss)
		}
		// One PutNarInfos for all four; a commit per path would be four.
		if after-before < 1 || after-before >= uint64(len(paths)) {
			t.Errorf("the import advanced the raft log by %d entries, want one commit for %d paths", after-before, len(paths))
		}
		ni := narRecord(n, store.HashPart(d.info.Path))
		if ni == nil || !strings.HasPrefix(ni.CA, "text:sha256:") || len(ni.References) != 2 {
			t.Errorf("record of %s: %+v", d.info.Path, ni)
		}
		if ni := narRecord(n, store.HashPart(b.info.Path)); ni == nil || !strings.HasPrefix(ni.CA, "fixed:r:sha256:") {
			t.Errorf("record of %s: %+v", b.info.Path, ni)
		}

		t.Run("again, referring to recorded paths", func(t *testing.T) {
			e := drvWithRefs(t, "z.drv", "refers to what the mesh has", d2.info.Path, a.info.Path)
			if code, body := post(t, exportStream(t, e)); code != http.StatusOK {
				t.Fatalf("import = %d %s", code, body)
			}
			if !hasNarInfo(n, e.info.Path) {
				t.Errorf("%s not recorded", e.info.Path)
			}
		})
	})

	t.Run("a reference neither in the mesh nor earlier", func(t *testing.T) {
		ok := sourceWithRefs(t, "fine", "a fine source\n")
		absent := sourceWithRefs(t, "absent", "never sent\n")
		d := drvWithRefs(t, "lacking.drv", "refers to an absent source", absent.info.Path)
		refused(t, exportStream(t, ok, d), absent.info.Path, ok, d)
		// Sent, but after the path that refers to it.
		refused(t, exportStream(t, ok, d, absent), absent.info.Path, ok, d, absent)
	})

	t.Run("a path its bytes do not make", func(t *testing.T) {
		ok := sourceWithRefs(t, "fine2", "another fine source\n")
		liar := sourceWithRefs(t, "liar", "the real content\n")
		other := sourceWithRefs(t, "liar", "other content\n")
		liar.info.Path = other.info.Path
		refused(t, exportStream(t, ok, liar), "not content-addressed", ok, liar)
		drv := drvWithRefs(t, "liar.drv", "text")
		drv.nar = drvWithRefs(t, "liar.drv", "other text").nar
		refused(t, exportStream(t, ok, drv), "not the text path", ok, drv)
	})

	t.Run("a truncated stream", func(t *testing.T) {
		a := sourceWithRefs(t, "t1", "first\n")
		b := sourceWithRefs(t, "t2", strings.Repeat("second, longer\n", 100))
		s := exportStream(t, a, b)
		for _, cut := range []int{len(s) - 8, len(s) - 40, len(s) - len(b.nar)/2} {
			refused(t, s[:cut], "truncated", a, b)
		}
		refused(t, append(bytes.Clone(s), "junk"...), "after the end marker", a, b)
	})

	t.Run("an empty stream", func(t *testing.T) {
		code, body := post(t, exportStream(t))
		if code != http.StatusOK || !strings.Contains(string(body), `"imported":[]`) {
			t.Errorf("empty import = %d %s", code, body)
		}
	})

	t.Run("needs the admin token", func(t *testing.T) {
		a := sourceWithRefs(t, "unauthorized", "x\n")
		code, _ := httpDo(t, http.MethodPost, apiURL(n, "/api/v1/nars/import"), "wrong", bytes.NewReader(exportStream(t, a)))
		if code != http.StatusUnauthorized || hasNarInfo(n, a.info.Path) {
			t.Errorf("import with a wrong token = %d, recorded %v", code, hasNarInfo(n, a.info.Path))
		}
	})
}
