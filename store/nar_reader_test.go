package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// rawTok is a token written verbatim by narOf.
type rawTok []byte

// narOf builds a NAR from tokens: a string becomes str(s), a rawTok is
// copied as is, a uint64 becomes a bare length word.
func narOf(toks ...any) []byte {
	var b []byte
	for _, tok := range toks {
		switch v := tok.(type) {
		case string:
			b = appendNarString(b, v)
		case rawTok:
			b = append(b, v...)
		case uint64:
			b = binary.LittleEndian.AppendUint64(b, v)
		default:
			panic("narOf: bad token")
		}
	}
	return b
}

// narFile is the tokens of a regular file node.
func narFile(content string) []any {
	return []any{"(", "type", "regular", "contents", content, ")"}
}

// narDirOf wraps entries (name, node tokens...) into a directory NAR.
func narDirOf(entries ...[]any) []byte {
	toks := []any{narMagic, "(", "type", "directory"}
	for _, e := range entries {
		toks = append(toks, "entry", "(", "name")
		toks = append(toks, e...)
		toks = append(toks, ")")
	}
	return narOf(append(toks, ")")...)
}

func entry(name string, node []any) []any { return append([]any{name, "node"}, node...) }

func TestNarReader_Valid(t *testing.T) {
	nar := narDirOf(
		entry("a", narFile("x")),
		entry("b", []any{"(", "type", "symlink", "target", "../../etc/passwd", ")"}),
		entry("c", []any{"(", "type", "directory", "entry", "(", "name", "d", "node",
			"(", "type", "regular", "executable", "", "contents", "hello world", ")", ")", ")"}),
	)
	r := NewNarReader(bytes.NewReader(nar))
	var got []string
	for {
		h, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		s := h.Path + ":" + string(h.Type) + ":" + h.LinkTarget
		if h.Type == NarRegular {
			b, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(b)) != h.Size {
				t.Errorf("%s: read %d bytes, size %d", h.Path, len(b), h.Size)
			}
			s += string(b)
			if h.Executable {
				s += ":x"
			}
		}
		got = append(got, s)
	}
	want := "|:directory:|a:regular:x|b:symlink:../../etc/passwd|c:directory:|c/d:regular:hello world:x"
	if g := "|" + strings.Join(got, "|"); g != want {
		t.Errorf("got %s\nwant %s", g, want)
	}
}

func TestNarReader_Hostile(t *testing.T) {
	huge := uint64(1) << 62
	sym := func(target string) []any { return []any{"(", "type", "symlink", "target", target, ")"} }
	deep := []any{narMagic}
	for range narMaxDepth + 1 {
		deep = append(deep, "(", "type", "directory", "entry", "(", "name", "d", "node")
	}
	deep = append(deep, narFile("")...)
	longPath := []any{narMagic}
	for range 20 {
		longPath = append(longPath, "(", "type", "directory", "entry", "(", "name", strings.Repeat("n", 250), "node")
	}
	longPath = append(longPath, narFile("")...)
	badPad := narOf(append([]any{narMagic}, narFile("hello\n")...)...)
	badPad[8*13+6] = 1 // first pad byte of "hello\n"

	cases := map[string][]byte{
		"empty":                nil,
		"bad magic":            narOf(append([]any{"nix-archive-2"}, narFile("")...)...),
		"magic only":           narOf(narMagic),
		"empty name":           narDirOf(entry("", narFile(""))),
		"dot name":             narDirOf(entry(".", narFile(""))),
		"dotdot name":          narDirOf(entry("..", narFile(""))),
		"slash name":           narDirOf(entry("/", narFile(""))),
		"escaping name":        narDirOf(entry("../x", narFile(""))),
		"nested slash name":    narDirOf(entry("a/b", narFile(""))),
		"NUL name":             narDirOf(entry("a\x00b", narFile(""))),
		"unsorted":             narDirOf(entry("b", narFile("")), entry("a", narFile(""))),
		"duplicate":            narDirOf(entry("a", narFile("")), entry("a", narFile(""))),
		"duplicate via link":   narDirOf(entry("a", sym("/tmp")), entry("a", narFile("x"))),
		"byte order":           narDirOf(entry("alpha", narFile("")), entry("Beta", narFile(""))),
		"bad padding":          badPad,
		"unknown dir tag":      narOf(narMagic, "(", "type", "directory", "entree", ")"),
		"unknown type":         narOf(narMagic, "(", "type", "fifo", ")"),
		"unknown file tag":     narOf(narMagic, "(", "type", "regular", "mode", "", "contents", "", ")"),
		"missing contents":     narOf(narMagic, "(", "type", "regular", ")"),
		"exec after contents":  narOf(narMagic, "(", "type", "regular", "contents", "", "executable", "", ")"),
		"double executable":    narOf(narMagic, "(", "type", "regular", "executable", "", "executable", "", "contents", "", ")"),
		"exec with value":      narOf(narMagic, "(", "type", "regular", "executable", "1", "contents", "", ")"),
		"trailing data":        append(narOf(append([]any{narMagic}, narFile("x")...)...), 0),
		"trailing nar":         append(narOf(append([]any{narMagic}, narFile("x")...)...), narOf(append([]any{narMagic}, narFile("x")...)...)...),
		"huge name length":     narOf(narMagic, "(", "type", "directory", "entry", "(", "name", ^uint64(0)),
		"long name":            narDirOf(entry(strings.Repeat("x", narMaxName+1), narFile(""))),
		"huge tag length":      narOf(narMagic, huge),
		"huge target length":   narOf(narMagic, "(", "type", "symlink", "target", huge),
		"huge contents length": narOf(narMagic, "(", "type", "regular", "contents", huge),
		"negative size":        narOf(narMagic, "(", "type", "regular", "contents", ^uint64(0)),
		"empty target":         narOf(append([]any{narMagic}, sym("")...)...),
		"NUL target":           narOf(append([]any{narMagic}, sym("a\x00b")...)...),
		"too deep":             narOf(deep...),
		"path too long":        narOf(longPath...),
		"unclosed entry":       narOf(narMagic, "(", "type", "directory", "entry", "(", "name", "a", "node", "(", "type", "regular", "contents", "", ")", ")"),
		"missing node tag":     narOf(narMagic, "(", "type", "directory", "entry", "(", "name", "a", "(", "type", "regular", "contents", "", ")", ")", ")"),
	}
	for name, nar := range cases {
		t.Run(name, func(t *testing.T) {
			if _, _, err := CheckNar(bytes.NewReader(nar)); !errors.Is(err, ErrBadNar) {
				t.Errorf("CheckNar = %v, want ErrBadNar", err)
			}
			if _, err := ListNar(bytes.NewReader(nar)); !errors.Is(err, ErrBadNar) {
				t.Errorf("ListNar = %v, want ErrBadNar", err)
			}
			base, sentinel := sentinelDir(t)
			if err := Restore(bytes.NewReader(nar), filepath.Join(base, "out")); !errors.Is(err, ErrBadNar) {
				t.Errorf("Restore = %v, want ErrBadNar", err)
			}
			checkSentinel(t, base, sentinel)
		})
	}
}

// sentinelDir makes a base directory holding an empty "sentinel"
// directory, next to which NARs are restored.
func sentinelDir(t testing.TB) (base, sentinel string) {
	t.Helper()
	base = t.TempDir()
	sentinel = filepath.Join(base, "sentinel")
	mustMkdir(t, sentinel)
	return base, sentinel
}

// checkSentinel fails if a restore into base/out wrote anything else.
func checkSentinel(t testing.TB, base, sentinel string) {
	t.Helper()
	if ents, err := os.ReadDir(sentinel); err != nil || len(ents) != 0 {
		t.Errorf("sentinel directory changed: %v %v", ents, err)
	}
	ents, err := os.ReadDir(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != "sentinel" && e.Name() != "out" {
			t.Errorf("restore wrote %s outside its target", e.Name())
		}
	}
}

func TestRestore_SymlinksStayLinks(t *testing.T) {
	base, sentinel := sentinelDir(t)
	nar := narDirOf(
		entry("a", []any{"(", "type", "symlink", "target", sentinel, ")"}),
		entry("b", []any{"(", "type", "symlink", "target", "../sentinel", ")"}),
		entry("c", narFile("inside")),
	)
	out := filepath.Join(base, "out")
	if err := Restore(bytes.NewReader(nar), out); err != nil {
		t.Fatal(err)
	}
	checkSentinel(t, base, sentinel)
	if got, err := os.Readlink(filepath.Join(out, "a")); err != nil || got != sentinel {
		t.Errorf("a -> %q, %v", got, err)
	}
	var dump bytes.Buffer
	if err := DumpPath(&dump, out); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dump.Bytes(), nar) {
		t.Error("dump of restored tree differs")
	}

	t.Run("target exists", func(t *testing.T) {
		nar := narOf(append([]any{narMagic}, narFile("x")...)...)
		link := filepath.Join(base, "link")
		if err := os.Symlink(filepath.Join(sentinel, "x"), link); err != nil {
			t.Fatal(err)
		}
		if err := Restore(bytes.NewReader(nar), link); err == nil {
			t.Error("Restore over an existing symlink succeeded")
		}
		if err := Restore(bytes.NewReader(nar), out); err == nil {
			t.Error("Restore over an existing directory succeeded")
		}
		if ents, _ := os.ReadDir(sentinel); len(ents) != 0 {
			t.Error("restore wrote through a symlink")
		}
	})
}

func TestNarReader_Truncated(t *testing.T) {
	nars := map[string][]byte{
		"file":    narOf(append([]any{narMagic}, narFile("hello\n")...)...),
		"symlink": narOf(narMagic, "(", "type", "symlink", "target", "a.txt", ")"),
		"dir": narDirOf(
			entry("a.txt", narFile("hello\n")),
			entry("link", []any{"(", "type", "symlink", "target", "a.txt", ")"}),
			entry("run", []any{"(", "type", "regular", "executable", "", "contents", "#!/bin/sh\n", ")"}),
			entry("sub", []any{"(", "type", "directory", ")"}),
		),
	}
	for name, nar := range nars {
		t.Run(name, func(t *testing.T) {
			if _, _, err := CheckNar(bytes.NewReader(nar)); err != nil {
				t.Fatalf("whole NAR rejected: %v", err)
			}
			for n := range len(nar) {
				if _, _, err := CheckNar(bytes.NewReader(nar[:n])); !errors.Is(err, ErrBadNar) {
					t.Fatalf("CheckNar of %d/%d bytes = %v, want ErrBadNar", n, len(nar), err)
				}
				base, sentinel := sentinelDir(t)
				if err := Restore(bytes.NewReader(nar[:n]), filepath.Join(base, "out")); !errors.Is(err, ErrBadNar) {
					t.Fatalf("Restore of %d/%d bytes = %v, want ErrBadNar", n, len(nar), err)
				}
				checkSentinel(t, base, sentinel)
			}
		})
	}
}

func TestNarReader_ReadErrors(t *testing.T) {
	t.Run("io error is not ErrBadNar", func(t *testing.T) {
		nar := narOf(append([]any{narMagic}, narFile("hello\n")...)...)
		boom := errors.New("boom")
		r := io.MultiReader(bytes.NewReader(nar[:20]), errReader{boom})
		_, _, err := CheckNar(r)
		if !errors.Is(err, boom) || errors.Is(err, ErrBadNar) {
			t.Errorf("CheckNar = %v, want the read error", err)
		}
	})
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestListNar_Offsets(t *testing.T) {
	for name, nar := range testNars(t) {
		t.Run(name, func(t *testing.T) {
			l, err := ListNar(bytes.NewReader(nar))
			if err != nil {
				t.Fatal(err)
			}
			var walk func(n *NarNode)
			walk = func(n *NarNode) {
				if n.Type == NarRegular {
					// the contents are preceded by their length
					if got := binary.LittleEndian.Uint64(nar[n.NarOffset-8:]); got != uint64(n.Size) {
						t.Errorf("length before narOffset %d is %d, want %d", n.NarOffset, got, n.Size)
					}
				}
				for _, e := range n.Entries {
					walk(e)
				}
			}
			walk(l.Root)
		})
	}
	t.Run("json", func(t *testing.T) {
		nar := narDirOf(
			entry("a", []any{"(", "type", "regular", "executable", "", "contents", "ab", ")"}),
			entry("e", []any{"(", "type", "directory", ")"}),
			entry("l", []any{"(", "type", "symlink", "target", "<a>", ")"}),
		)
		l, err := ListNar(bytes.NewReader(nar))
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		enc := jsonEncoderNoHTML(&b)
		if err := enc.Encode(l); err != nil {
			t.Fatal(err)
		}
		want := `{"version":1,"root":{"type":"directory","entries":{"a":{"type":"regular","size":2,"executable":true,"narOffset":264},` +
			`"e":{"type":"directory","entries":{}},"l":{"type":"symlink","target":"<a>"}}}}` + "\n"
		if b.String() != want {
			t.Errorf("got  %s\nwant %s", b.String(), want)
		}
	})
}
