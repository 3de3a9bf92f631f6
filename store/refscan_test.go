package store

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/drvmesh/drvmesh/internal/testutil"
)

func randHashPart(r *rand.Rand) string {
	b := make([]byte, hashPartLen)
	for i := range b {
		b[i] = nix32Alphabet[r.IntN(len(nix32Alphabet))]
	}
	return string(b)
}

// naiveRefs is the plain definition: every candidate whose hash part
// occurs anywhere in data.
func naiveRefs(data []byte, candidates []string) []string {
	var out []string
	for _, c := range candidates {
		hp := filepath.Base(c)[:hashPartLen]
		if bytes.Contains(data, []byte(hp)) {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return out
}

func TestRefScanner_Write(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		var candidates []string
		for i := range 1 + r.IntN(8) {
			candidates = append(candidates, "/nix/store/"+randHashPart(r)+"-p"+string(rune('a'+i)))
		}
		// Data: random bytes, mostly from the alphabet so windows are
		// long, with some candidates' hash parts (whole or cut short).
		var data []byte
		for range 1 + r.IntN(20) {
			switch r.IntN(4) {
			case 0:
				data = append(data, filepath.Base(candidates[r.IntN(len(candidates))])[:hashPartLen]...)
			case 1:
				data = append(data, filepath.Base(candidates[r.IntN(len(candidates))])[:1+r.IntN(hashPartLen-1)]...)
			case 2:
				for range r.IntN(50) {
					data = append(data, nix32Alphabet[r.IntN(len(nix32Alphabet))])
				}
			default:
				for range r.IntN(50) {
					data = append(data, byte(r.IntN(256)))
				}
			}
		}
		want := naiveRefs(data, candidates)
		s := NewRefScanner(candidates)
		for rest := data; len(rest) > 0; {
			n := min(len(rest), 1+r.IntN(40))
			if _, err := s.Write(rest[:n]); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		if got := s.Found(); !slices.Equal(got, want) {
			t.Fatalf("round %d: found %v, want %v (data %q)", round, got, want, data)
		}
	}
	t.Run("straddling one-byte writes", func(t *testing.T) {
		c := "/nix/store/" + randHashPart(r) + "-x"
		s := NewRefScanner([]string{c})
		for _, b := range []byte("--" + filepath.Base(c)[:hashPartLen] + "--") {
			s.Write([]byte{b})
		}
		if got := s.Found(); !slices.Equal(got, []string{c}) {
			t.Fatalf("found %v", got)
		}
	})
	t.Run("no candidates", func(t *testing.T) {
		s := NewRefScanner([]string{"/nix/store/short"})
		s.Write([]byte("anything"))
		if got := s.Found(); len(got) != 0 {
			t.Fatalf("found %v", got)
		}
	})
}

// TestRefScanner_MatchesNix builds a derivation with real Nix whose output
// names some of its inputs and itself, and requires the scan of its NAR to
// give the references the daemon registered.
func TestRefScanner_MatchesNix(t *testing.T) {
	testutil.RequireNix(t)
	dir := t.TempDir()
	storeURI := "local?root=" + dir + "/root"
	expr := filepath.Join(dir, "refs.nix")
	src := `let
  mk = name: script: deps: derivation {
    inherit name deps; system = builtins.currentSystem; builder = "/bin/sh";
    PATH = "/usr/bin:/bin"; args = [ "-c" script ];
  };
  a = mk "a" "echo a > $out" [ ];
  b = mk "b" "echo b > $out" [ ];
  c = mk "c" "echo c > $out" [ ];
  unused = mk "unused" "echo u > $out" [ ];
in mk "main" ''
  mkdir -p $out/bin
  echo ${a} > $out/bin/a
  printf '%s' ${b} | od -c > $out/not-b
  ln -s ${c}/x $out/link-to-c
  echo $out > $out/self
'' [ unused ]
`
	if err := os.WriteFile(expr, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	drv := strings.TrimSpace(string(runNix(t, dir, nil, "nix-instantiate", "--store", storeURI, expr)))
	out := strings.TrimSpace(string(runNix(t, dir, nil, "nix-store", "--store", storeURI, "--realise", drv)))
	want := strings.Fields(string(runNix(t, dir, nil, "nix-store", "--store", storeURI, "--query", "--references", out)))
	slices.Sort(want)

	// The daemon's candidates: the closure of the inputs, and the outputs.
	inputs := strings.Fields(string(runNix(t, dir, nil, "nix-store", "--store", storeURI, "--query", "--requisites", "--include-outputs", drv)))
	var candidates []string
	for _, p := range inputs {
		if !strings.HasSuffix(p, ".drv") && p != out {
			if _, err := os.Lstat(filepath.Join(dir, "root", p)); err == nil {
				candidates = append(candidates, p)
			}
		}
	}
	candidates = append(candidates, out)
	s := NewRefScanner(candidates)
	if err := DumpPath(s, filepath.Join(dir, "root", out)); err != nil {
		t.Fatal(err)
	}
	got := s.Found()
	if !slices.Equal(got, want) {
		t.Fatalf("scan found %v, nix registered %v (candidates %v)", got, want, candidates)
	}
	if len(want) != 3 { // a, c (through the symlink) and itself; not b, not unused
		t.Fatalf("nix registered %v: the test derivation no longer covers what it should", want)
	}
}
