package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/drvmesh/drvmesh/internal/testutil"
)

const drvTestdata = "../../testdata/nix-2.8"

func showJSON(t *testing.T, args ...string) map[string]any {
	t.Helper()
	var out bytes.Buffer
	if err := drvShow(&out, append(args, "--json")); err != nil {
		t.Fatalf("drv show %v: %v", args, err)
	}
	var got map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("drv show %v printed bad JSON: %v\n%s", args, err, out.Bytes())
	}
	return got
}

func TestDrvShow_Testdata(t *testing.T) {
	for _, tc := range []struct{ dir, storeDir string }{{"drv", "/nix/store"}, {"gnu-store-drv", "/gnu/store"}} {
		files, _ := filepath.Glob(filepath.Join(drvTestdata, tc.dir, "*.drv"))
		if len(files) == 0 {
			t.Fatalf("no testdata in %s", filepath.Join(drvTestdata, tc.dir))
		}
		for _, f := range files {
			t.Run(tc.dir+"/"+filepath.Base(f), func(t *testing.T) {
				got := showJSON(t, f)
				key := tc.storeDir + "/" + filepath.Base(f)
				d, ok := got[key].(map[string]any)
				if !ok || len(got) != 1 {
					t.Fatalf("no single entry %s in %v", key, got)
				}
				outs, _ := d["outputs"].(map[string]any)
				if len(outs) == 0 {
					t.Errorf("no outputs in %v", d)
				}
				for name, o := range outs {
					p, _ := o.(map[string]any)["path"].(string)
					if !strings.HasPrefix(p, tc.storeDir+"/") || d["env"].(map[string]any)[name] != p {
						t.Errorf("output %s: %v", name, o)
					}
				}
				var text bytes.Buffer
				if err := drvShow(&text, []string{f}); err != nil || !strings.Contains(text.String(), key) {
					t.Errorf("text form: %v\n%s", err, text.String())
				}
			})
		}
	}
}

func TestDrvShow_Errors(t *testing.T) {
	src := filepath.Join(drvTestdata, "drv", "1i083nrcizs447xx1w4g108scp9lbm05-with-deps.drv")
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	wrongOut := bytes.ReplaceAll(b, []byte("5i9dv28raa78ky07vchzp8jb3krm8qg8"), []byte("5i9dv28raa78ky07vchzp8jb3krm8qg9"))
	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no args", nil, 2, "one .drv"},
		{"two args", []string{src, src}, 2, "one .drv"},
		{"missing file", []string{filepath.Join(dir, "none.drv")}, 1, "none.drv"},
		{"malformed", []string{write("0hm2f1psjpcwg8fijsmr4wwxrx59s092-bad.drv", b[:len(b)-1])}, 2, "bad derivation"},
		{"wrong output path", []string{write("1i083nrcizs447xx1w4g108scp9lbm05-with-deps.drv", wrongOut), "--drv-dir", filepath.Dir(src)}, 2, `output "out"`},
		{"bad file name", []string{write("with-deps.drv", b), "--drv-dir", filepath.Dir(src)}, 2, "bad store path"},
		{"wrong store dir", []string{src, "--store-dir", "/gnu/store"}, 2, "should be /gnu/store/"},
		{"relative store dir", []string{src, "--store-dir", "gnu/store"}, 2, "bad store path"},
		{"unknown flag", []string{src, "--nope"}, 2, "nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := drvShow(&out, tc.args)
			if code := exitCode(err); code != tc.code || err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("drv show %v: exit %d, %v; want exit %d mentioning %q", tc.args, code, err, tc.code, tc.msg)
			}
		})
	}
	t.Run("input not found", func(t *testing.T) {
		// Alone in a directory and not in the host store: exit 1.
		lone := filepath.Join(t.TempDir(), "1i083nrcizs447xx1w4g108scp9lbm05-with-deps.drv")
		if err := os.WriteFile(lone, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat("/nix/store/xwhm6yg45c0k7n32xmhjj7mr4862i5f5-simple.drv"); err == nil {
			t.Skip("the host store has the input")
		}
		err := drvShow(&bytes.Buffer{}, []string{lone})
		if exitCode(err) != 1 || !strings.Contains(err.Error(), "not found") {
			t.Errorf("got %v", err)
		}
	})
}

// TestDrvShow_MatchesNix compares the JSON with nix show-derivation on
// derivations instantiated into a private store.
func TestDrvShow_MatchesNix(t *testing.T) {
	testutil.RequireNix(t)
	dir := t.TempDir()
	expr := `let mk = a: derivation ({ system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "x\ny\"z" ]; } // a);
	  f = mk { name = "f"; outputHashMode = "recursive"; outputHashAlgo = "sha1"; outputHash = "0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33"; };
	  m = mk { name = "m"; outputs = [ "out" "dev" ]; tab = "a\tb <&>"; };
	in mk { name = "top"; inherit f; d = m.dev; src = ./src.txt; }`
	if err := os.WriteFile(filepath.Join(dir, "t.nix"), []byte(expr), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "src.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root")
	env := testutil.NixEnv(root, "")
	nix := func(args ...string) []byte {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = env
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, stderr.String())
		}
		return out
	}
	top := strings.TrimSpace(string(nix("nix-instantiate", "--store", "local?root="+root, filepath.Join(dir, "t.nix"))))
	drvs := strings.Fields(string(nix("nix-store", "--store", "local?root="+root, "-qR", top)))
	n := 0
	for _, p := range drvs {
		if !strings.HasSuffix(p, ".drv") {
			continue
		}
		n++
		var want map[string]any
		if err := json.Unmarshal(nix("nix", "show-derivation", "--store", "local?root="+root, p), &want); err != nil {
			t.Fatal(err)
		}
		got := showJSON(t, root+p)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %v\nwant %v", p, got, want)
		}
	}
	if n != 3 {
		t.Errorf("compared %d derivations, want 3", n)
	}
}
