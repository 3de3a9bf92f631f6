package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/drvmesh/drvmesh/internal/testutil"
)

// exportRecord is one record read back from an export stream.
type exportRecord struct {
	nar  []byte
	info ExportInfo
}

func readExport(t *testing.T, stream []byte) []exportRecord {
	t.Helper()
	recs, err := readExportErr(stream)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func readExportErr(stream []byte) ([]exportRecord, error) {
	er := NewExportReader(bytes.NewReader(stream))
	var recs []exportRecord
	for {
		nar, err := er.Next()
		if errors.Is(err, io.EOF) {
			return recs, nil
		}
		if err != nil {
			return recs, err
		}
		b, err := io.ReadAll(nar)
		if err != nil {
			return recs, err
		}
		info, err := er.Info()
		if err != nil {
			return recs, err
		}
		recs = append(recs, exportRecord{nar: b, info: info})
	}
}

func dumpBytes(t *testing.T, path string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := DumpPath(&b, path); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// exportFixture makes trees covering every NAR feature and the infos to
// export them with.
func exportFixture(t *testing.T) (paths []string, infos []ExportInfo) {
	t.Helper()
	dir := t.TempDir()
	tree := makeNarTestTree(t, dir)
	file := filepath.Join(dir, "x.drv")
	mustWrite(t, file, "Derive([])", 0o644)
	empty := filepath.Join(dir, "empty")
	mustWrite(t, empty, "", 0o755)
	link := filepath.Join(dir, "link")
	if err := os.Symlink("/somewhere", link); err != nil {
		t.Fatal(err)
	}
	a := "/nix/store/00000000000000000000000000000000-tree"
	b := "/nix/store/11111111111111111111111111111111-x.drv"
	paths = []string{tree, file, empty, link}
	infos = []ExportInfo{
		{Path: a},
		{Path: b, References: []string{a, b}, Deriver: "/nix/store/22222222222222222222222222222222-d.drv"},
		{Path: "/nix/store/33333333333333333333333333333333-empty", Signature: "(signature (data x))"},
		{Path: "/nix/store/44444444444444444444444444444444-link", References: []string{a}},
	}
	return paths, infos
}

func TestExportWriter_RoundTrip(t *testing.T) {
	paths, infos := exportFixture(t)
	var stream bytes.Buffer
	ew := NewExportWriter(&stream)
	for i, p := range paths {
		if i%2 == 0 {
			if err := ew.WritePath(infos[i], p); err != nil {
				t.Fatal(err)
			}
		} else if err := ew.WriteNar(infos[i], bytes.NewReader(dumpBytes(t, p))); err != nil {
			t.Fatal(err)
		}
	}
	if err := ew.Close(); err != nil {
		t.Fatal(err)
	}
	if ew.Written() != int64(stream.Len()) {
		t.Errorf("Written() = %d, stream has %d bytes", ew.Written(), stream.Len())
	}
	recs := readExport(t, stream.Bytes())
	if len(recs) != len(paths) {
		t.Fatalf("read %d records, wrote %d", len(recs), len(paths))
	}
	for i, r := range recs {
		if !bytes.Equal(r.nar, dumpBytes(t, paths[i])) {
			t.Errorf("record %d: nar differs from DumpPath", i)
		}
		if !reflect.DeepEqual(r.info, infos[i]) {
			t.Errorf("record %d: info %+v, want %+v", i, r.info, infos[i])
		}
	}

	t.Run("empty stream", func(t *testing.T) {
		var b bytes.Buffer
		if err := NewExportWriter(&b).Close(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b.Bytes(), make([]byte, 8)) {
			t.Fatalf("empty stream = %x", b.Bytes())
		}
		if recs := readExport(t, b.Bytes()); len(recs) != 0 {
			t.Fatalf("read %d records from an empty stream", len(recs))
		}
	})
	t.Run("skipping records", func(t *testing.T) {
		er := NewExportReader(bytes.NewReader(stream.Bytes()))
		n := 0
		for {
			_, err := er.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			n++
		}
		if n != len(paths) {
			t.Fatalf("Next without reading saw %d records, want %d", n, len(paths))
		}
	})
	t.Run("nars are checkable", func(t *testing.T) {
		er := NewExportReader(bytes.NewReader(stream.Bytes()))
		for i := range paths {
			nar, err := er.Next()
			if err != nil {
				t.Fatal(err)
			}
			_, size, err := CheckNar(nar)
			if err != nil {
				t.Fatalf("record %d: CheckNar: %v", i, err)
			}
			if want := int64(len(dumpBytes(t, paths[i]))); size != want {
				t.Errorf("record %d: nar size %d, want %d", i, size, want)
			}
			if _, err := er.Info(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func TestExportReader_Bad(t *testing.T) {
	paths, infos := exportFixture(t)
	var good bytes.Buffer
	ew := NewExportWriter(&good)
	for i := range 2 {
		if err := ew.WritePath(infos[i], paths[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := ew.Close(); err != nil {
		t.Fatal(err)
	}
	g := good.Bytes()
	firstNar := len(dumpBytes(t, paths[0]))
	u64 := func(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
	with := func(off int, b []byte) []byte {
		out := bytes.Clone(g)
		copy(out[off:], b)
		return out
	}
	cases := map[string][]byte{
		"empty":                 nil,
		"bad marker":            with(0, u64(2)),
		"bad magic":             with(8+firstNar, u64(0x4558494f)),
		"bad nar magic":         with(16, []byte("nix-archivX")),
		"trailing data":         append(bytes.Clone(g), 0),
		"no end marker":         g[:len(g)-8],
		"bad signature flag":    with(8+firstNar+8+(8+48)+8+8, u64(7)),
		"huge path":             with(8+firstNar+8, u64(1<<40)),
		"nar bad tag":           with(8+24+8, []byte("[")),
		"truncated in contents": g[:8+firstNar/2],
	}
	for i := 1; i < len(g); i += 97 {
		if i > 4096 && i < len(g)-4096 {
			i += len(g) / 7 // the big file's contents: a few points do
		}
		cases["truncated at "+strconv.Itoa(i)] = g[:i]
	}
	for name, stream := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := readExportErr(stream)
			if !errors.Is(err, ErrBadNar) {
				t.Fatalf("err = %v, want ErrBadNar", err)
			}
		})
	}
}

// TestExportWriter_MatchesNix compares our stream with nix-store --export
// of the same paths byte for byte, reads Nix's, and has nix-store --import
// take ours into a fresh store.
func TestExportWriter_MatchesNix(t *testing.T) {
	testutil.RequireNix(t)
	dir := t.TempDir()
	srcTree := makeNarTestTree(t, dir)
	expr := `derivation { name = "e"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "true" ]; src = ` + srcTree + `; }`
	root := filepath.Join(dir, "root")
	nix := func(root string, stdin []byte, args ...string) []byte {
		t.Helper()
		cmd := exec.Command(args[0], append([]string{"--store", "local?root=" + root}, args[1:]...)...)
		cmd.Env = testutil.NixEnv(root, "")
		cmd.Stdin = bytes.NewReader(stdin)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%v: %v: %s", args, err, stderr.String())
		}
		return out
	}
	drv := strings.TrimSpace(string(nix(root, nil, "nix-instantiate", "-E", expr)))
	closure := strings.Fields(string(nix(root, nil, "nix-store", "-qR", drv)))
	if len(closure) != 2 || closure[1] != drv {
		t.Fatalf("closure of %s = %q, want the source then the .drv", drv, closure)
	}
	src := closure[0]
	want := nix(root, nil, append([]string{"nix-store", "--export"}, closure...)...)

	var ours bytes.Buffer
	ew := NewExportWriter(&ours)
	if err := ew.WritePath(ExportInfo{Path: src}, root+src); err != nil {
		t.Fatal(err)
	}
	if err := ew.WritePath(ExportInfo{Path: drv, References: []string{src}}, root+drv); err != nil {
		t.Fatal(err)
	}
	if err := ew.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ours.Bytes(), want) {
		t.Fatalf("our export (%d bytes) differs from nix-store --export (%d bytes)", ours.Len(), len(want))
	}

	t.Run("we read nix's", func(t *testing.T) {
		recs := readExport(t, want)
		if len(recs) != 2 {
			t.Fatalf("read %d records", len(recs))
		}
		if !bytes.Equal(recs[0].nar, dumpBytes(t, root+src)) || recs[0].info.Path != src {
			t.Errorf("first record is not %s", src)
		}
		if recs[1].info.Path != drv || !reflect.DeepEqual(recs[1].info.References, []string{src}) {
			t.Errorf("second record %+v, want %s referring to %s", recs[1].info, drv, src)
		}
	})
	t.Run("nix imports ours", func(t *testing.T) {
		fresh := filepath.Join(dir, "fresh")
		got := strings.Fields(string(nix(fresh, ours.Bytes(), "nix-store", "--import")))
		if !reflect.DeepEqual(got, closure) {
			t.Fatalf("nix-store --import printed %q, want %q", got, closure)
		}
		nix(fresh, nil, "nix-store", "--verify-path", src, drv)
		refs := strings.Fields(string(nix(fresh, nil, "nix-store", "-q", "--references", drv)))
		if !reflect.DeepEqual(refs, []string{src}) {
			t.Errorf("imported %s refers to %q, want %s", drv, refs, src)
		}
	})
}

func TestExportReader_SetLimits(t *testing.T) {
	paths, infos := exportFixture(t)
	var stream bytes.Buffer
	ew := NewExportWriter(&stream)
	if err := ew.WritePath(infos[1], paths[1]); err != nil { // two references
		t.Fatal(err)
	}
	if err := ew.Close(); err != nil {
		t.Fatal(err)
	}
	read := func(l ExportLimits) error {
		er := NewExportReader(bytes.NewReader(stream.Bytes()))
		er.SetLimits(l)
		if _, err := er.Next(); err != nil {
			return err
		}
		_, err := er.Info()
		return err
	}
	if err := read(ExportLimits{}); err != nil {
		t.Fatalf("default limits: %v", err)
	}
	if err := read(ExportLimits{MaxReferences: 2, MaxPath: len(infos[1].Deriver)}); err != nil {
		t.Fatalf("limits that fit: %v", err)
	}
	for name, l := range map[string]ExportLimits{
		"references": {MaxReferences: 1},
		"path":       {MaxPath: len(infos[1].Path) - 1},
	} {
		if err := read(l); !errors.Is(err, ErrBadNar) {
			t.Errorf("%s over the limit: %v, want ErrBadNar", name, err)
		}
	}
}
