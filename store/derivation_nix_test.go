package store

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/drvmesh/drvmesh/internal/testutil"
)

// nixDrvExpr covers multiple outputs, fixed outputs of every algorithm in
// both modes, escapes and raw control bytes in env, an input source, and a
// chain a → b → c → d with fixed-output inputs.
const nixDrvExpr = `
let
  sys = "x86_64-linux";
  ctl = builtins.fromJSON "\"\\u0001\\u001b\\r\\u007f\\u00e9 end\"";
  mk = attrs: derivation ({ system = sys; builder = "/bin/sh"; args = [ "-c" "true" "a\"b\\c\nd" ]; } // attrs);
  a = mk { name = "a"; weird = "q\" b\\ n\n t\t ${ctl}"; "k\"ey" = "v"; };
  b = mk { name = "b"; outputs = [ "out" "lib" "dev" ]; inherit a; };
  c = mk { name = "c"; dep = "${b.lib} ${a}"; src = ./src.txt; };
  f1 = mk { name = "f-sha1-flat"; outputHashMode = "flat"; outputHashAlgo = "sha1"; outputHash = "0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33"; };
  f2 = mk { name = "f-sha1-rec"; outputHashMode = "recursive"; outputHashAlgo = "sha1"; outputHash = "0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33"; };
  f3 = mk { name = "f-sha512-rec"; outputHashMode = "recursive"; outputHash = "sha512-z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg=="; };
  f4 = mk { name = "f-md5-flat"; outputHashMode = "flat"; outputHashAlgo = "md5"; outputHash = "d41d8cd98f00b204e9800998ecf8427e"; };
  f5 = mk { name = "f-sha256-rec"; outputHashMode = "recursive"; outputHashAlgo = "sha256"; outputHash = "0000000000000000000000000000000000000000000000000000"; };
  f6 = mk { name = "f-sha512-flat"; outputHashMode = "flat"; outputHash = "sha512-z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg=="; };
  d = mk { name = "d"; inherit c f1 f2 f3 f4 f5 f6; };
in { inherit a b c d; }
`

// instantiate writes nixDrvExpr to a temp dir and instantiates it into a
// private store with the given store dir. It returns the .drv paths Nix
// printed and the physical directory holding them.
func instantiate(t *testing.T, storeDir string) (top []string, physical string) {
	t.Helper()
	testutil.RequireNix(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "t.nix"), []byte(nixDrvExpr), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "src.txt"), []byte("source\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root")
	cmd := exec.Command("nix-instantiate", "--store", "local?root="+root+"&store="+storeDir, filepath.Join(dir, "t.nix"))
	cmd.Env = testutil.NixEnv(root, "")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("nix-instantiate: %v\n%s", err, stderr.String())
	}
	top = strings.Fields(string(out))
	if len(top) != 4 {
		t.Fatalf("nix-instantiate printed %q", out)
	}
	for _, cand := range []string{root + storeDir, root + "/nix/store"} {
		if _, err := os.Stat(filepath.Join(cand, filepath.Base(top[0]))); err == nil {
			return top, cand
		}
	}
	t.Fatalf("cannot find %s under %s", top[0], root)
	return nil, ""
}

func TestParseDerivation_RealNix(t *testing.T) {
	for _, storeDir := range []string{"/nix/store", "/gnu/store"} {
		t.Run(storeDir, func(t *testing.T) {
			top, physical := instantiate(t, storeDir)
			load := DirLoader(physical)
			h := NewHasher(load)
			drvs, srcs, err := DrvClosure(top[3], load) // d: the whole graph
			if err != nil {
				t.Fatal(err)
			}
			if len(drvs) != 10 || len(srcs) != 1 || !strings.HasSuffix(srcs[0], "-src.txt") {
				t.Fatalf("closure of d: %d drvs %v, srcs %v", len(drvs), drvs, srcs)
			}
			seen := map[string]bool{}
			for _, p := range drvs {
				b, err := load(p)
				if err != nil {
					t.Fatal(err)
				}
				d := mustParse(t, b)
				if got := d.ATerm(); !bytes.Equal(got, b) {
					t.Errorf("%s: printed differs:\n got %q\nwant %q", p, got, b)
				}
				name, err := DrvName(p)
				if err != nil {
					t.Fatal(err)
				}
				if got := MakeTextPath(storeDir, name+".drv", b, d.References()); got != p {
					t.Errorf("text path %s, want %s", got, p)
				}
				if err := h.CheckOutputPaths(d, storeDir, name); err != nil {
					t.Errorf("%s: %v", p, err)
				}
				if d.IsFixedOutput() {
					seen[d.Outputs[0].HashAlgo] = true
				}
				switch name {
				case "a":
					v, _ := d.Getenv("weird")
					if want := "q\" b\\ n\n t\t \x01\x1b\r\x7f\xc3\xa9 end"; v != want {
						t.Errorf("weird = %q, want %q", v, want)
					}
					if _, ok := d.Getenv(`k"ey`); !ok {
						t.Error(`env key k"ey missing`)
					}
				case "b":
					if strings.Join(d.OutputNames(), " ") != "dev lib out" {
						t.Errorf("b outputs %v", d.OutputNames())
					}
				}
			}
			for _, algo := range []string{"sha1", "r:sha1", "r:sha512", "md5", "r:sha256", "sha512"} {
				if !seen[algo] {
					t.Errorf("no fixed output with %s", algo)
				}
			}
			// Tampering with an input changes the dependents' paths.
			b, _ := load(top[3])
			d := mustParse(t, b)
			tamper := func(p string) ([]byte, error) {
				raw, err := load(p)
				if strings.HasSuffix(p, "-a.drv") {
					raw = bytes.Replace(raw, []byte(`"-c"`), []byte(`"-e"`), 1)
				}
				return raw, err
			}
			if err := d.CheckOutputPaths(storeDir, "d", tamper); !errors.Is(err, ErrBadDerivation) {
				t.Errorf("tampered input: %v", err)
			}
		})
	}
}
