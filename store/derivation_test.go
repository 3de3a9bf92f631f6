package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The go-nix bar/foo fixtures of docs/formats.md §2.4.
const (
	barDrv     = `Derive([("out","/nix/store/4q0pg5zpfmznxscq3avycvf9xdvx50n3-bar","r:sha256","08813cbee9903c62be4c5027726a418a300da4500b2d369d3af9286f4815ceba")],[],[],":",":",[],[("builder",":"),("name","bar"),("out","/nix/store/4q0pg5zpfmznxscq3avycvf9xdvx50n3-bar"),("outputHash","08813cbee9903c62be4c5027726a418a300da4500b2d369d3af9286f4815ceba"),("outputHashAlgo","sha256"),("outputHashMode","recursive"),("system",":")])`
	barDrvPath = "/nix/store/0hm2f1psjpcwg8fijsmr4wwxrx59s092-bar.drv"
	fooDrv     = `Derive([("out","/nix/store/5vyvcwah9l9kf07d52rcgdk70g2f4y13-foo","","")],[("/nix/store/0hm2f1psjpcwg8fijsmr4wwxrx59s092-bar.drv",["out"])],[],":",":",[],[("bar","/nix/store/4q0pg5zpfmznxscq3avycvf9xdvx50n3-bar"),("builder",":"),("name","foo"),("out","/nix/store/5vyvcwah9l9kf07d52rcgdk70g2f4y13-foo"),("system",":")])`
	fooDrvPath = "/nix/store/4wvvbi4jwn0prsdxb7vs673qa5h9gr7x-foo.drv"
	fooMasked  = `Derive([("out","","","")],[("724f3e3634fce4cbbbd3483287b8798588e80280660b9a63fd13a1bc90485b33",["out"])],[],":",":",[],[("bar","/nix/store/4q0pg5zpfmznxscq3avycvf9xdvx50n3-bar"),("builder",":"),("name","foo"),("out",""),("system",":")])`
)

const testdataDir = "../testdata/nix-2.8"

// mapLoader serves .drvs from memory and counts loads.
type mapLoader struct {
	files map[string][]byte
	loads map[string]int
}

func (m *mapLoader) load(p string) ([]byte, error) {
	if m.loads == nil {
		m.loads = map[string]int{}
	}
	m.loads[p]++
	b, ok := m.files[p]
	if !ok {
		return nil, fmt.Errorf("%s: %w", p, os.ErrNotExist)
	}
	return b, nil
}

func mustParse(t testing.TB, b []byte) *Derivation {
	t.Helper()
	d, err := ParseDerivation(b)
	if err != nil {
		t.Fatalf("ParseDerivation: %v", err)
	}
	return d
}

func TestDerivation_FormatsChain(t *testing.T) {
	ml := &mapLoader{files: map[string][]byte{barDrvPath: []byte(barDrv), fooDrvPath: []byte(fooDrv)}}
	t.Run("text paths", func(t *testing.T) {
		for p, b := range ml.files {
			d := mustParse(t, b)
			name, err := DrvName(p)
			if err != nil {
				t.Fatal(err)
			}
			if got := MakeTextPath("/nix/store", name+".drv", b, d.References()); got != p {
				t.Errorf("text path %s, want %s", got, p)
			}
		}
	})
	t.Run("modulo of the fixed-output bar", func(t *testing.T) {
		m, err := NewHasher(ml.load).Modulo(barDrvPath)
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(m[:]); got != "724f3e3634fce4cbbbd3483287b8798588e80280660b9a63fd13a1bc90485b33" {
			t.Errorf("modulo(bar) = %s", got)
		}
	})
	t.Run("masked foo", func(t *testing.T) {
		foo := mustParse(t, []byte(fooDrv))
		for _, spliced := range []bool{true, false} {
			sum, err := NewHasher(ml.load).hashDrv(foo, true, spliced, map[string]bool{})
			if err != nil {
				t.Fatal(err)
			}
			if want := sha256.Sum256([]byte(fooMasked)); sum != want {
				t.Errorf("spliced=%v: masked hash %x, want %x", spliced, sum, want)
			}
			if got := hex.EncodeToString(sum[:]); got != "24c43196ac9c7b557bc525d13d16f990f730c060ae61f9133195f1c0a2ea0d9f" {
				t.Errorf("masked hash %s", got)
			}
		}
	})
	t.Run("check output paths", func(t *testing.T) {
		for p, b := range ml.files {
			name, _ := DrvName(p)
			if err := mustParse(t, b).CheckOutputPaths("/nix/store", name, ml.load); err != nil {
				t.Errorf("%s: %v", p, err)
			}
		}
	})
}

// testdataDrvs lists the .drv files of a testdata folder.
func testdataDrvs(t testing.TB, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(testdataDir, dir, "*.drv"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata in %s: %v", dir, err)
	}
	return files
}

func TestParseDerivation_Testdata(t *testing.T) {
	for _, tc := range []struct{ dir, storeDir string }{
		{"drv", "/nix/store"},
		{"gnu-store-drv", "/gnu/store"},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			load := DirLoader(filepath.Join(testdataDir, tc.dir))
			h := NewHasher(load)
			for _, f := range testdataDrvs(t, tc.dir) {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				d := mustParse(t, b)
				if got := d.ATerm(); !bytes.Equal(got, b) {
					t.Errorf("%s: ATerm differs:\n got %s\nwant %s", f, got, b)
				}
				base := filepath.Base(f)
				name, err := DrvName(base)
				if err != nil {
					t.Fatal(err)
				}
				if got := MakeTextPath(tc.storeDir, name+".drv", b, d.References()); filepath.Base(got) != base {
					t.Errorf("%s: text path %s", f, got)
				}
				if d.StoreDir() != tc.storeDir {
					t.Errorf("%s: StoreDir %q", f, d.StoreDir())
				}
				if err := h.CheckOutputPaths(d, tc.storeDir, name); err != nil {
					t.Errorf("%s: %v", f, err)
				}
				// A struct not from bytes is printed instead of spliced; the
				// paths must not change.
				fresh := exported(d)
				if err := h.CheckOutputPaths(&fresh, tc.storeDir, name); err != nil {
					t.Errorf("%s printed: %v", f, err)
				}
			}
		})
	}
}

func TestHasher_OutputPaths_DrvOutputs(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(testdataDir, "drv-outputs.txt"))
	if err != nil {
		t.Fatal(err)
	}
	h := NewHasher(DirLoader(filepath.Join(testdataDir, "drv")))
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		fields := strings.Fields(line)
		drvPath, want := fields[0], fields[1:]
		b, err := os.ReadFile(filepath.Join(testdataDir, "drv", filepath.Base(drvPath)))
		if err != nil {
			t.Fatal(err)
		}
		d := mustParse(t, b)
		name, _ := DrvName(drvPath)
		paths, err := h.OutputPaths(d, "/nix/store", name)
		if err != nil {
			t.Fatalf("%s: %v", drvPath, err)
		}
		var got []string
		for _, p := range paths {
			got = append(got, p)
		}
		if !sameSet(got, want) {
			t.Errorf("%s: computed %v, nix says %v", drvPath, got, want)
		}
		n++
	}
	if n < 7 {
		t.Errorf("only %d lines checked", n)
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, s := range a {
		m[s]++
	}
	for _, s := range b {
		m[s]--
	}
	for _, v := range m {
		if v != 0 {
			return false
		}
	}
	return true
}

func TestDerivation_CheckOutputPaths_Wrong(t *testing.T) {
	dir := filepath.Join(testdataDir, "drv")
	files := testdataDrvs(t, dir[len(testdataDir)+1:])
	load := DirLoader(dir)
	for _, f := range files {
		b, _ := os.ReadFile(f)
		name, _ := DrvName(f)
		for _, o := range mustParse(t, b).Outputs {
			t.Run(filepath.Base(f)+"/"+o.Name, func(t *testing.T) {
				// Flip one character of the output's hash part, in the tuple
				// and the env var alike.
				wrongHash := "00000000000000000000000000000000"
				tampered := bytes.ReplaceAll(b, []byte(o.Path), []byte(filepath.Dir(o.Path)+"/"+wrongHash+filepath.Base(o.Path)[32:]))
				d, err := ParseDerivation(tampered)
				if err != nil {
					t.Fatal(err)
				}
				err = d.CheckOutputPaths("/nix/store", name, load)
				if !errors.Is(err, ErrBadDerivation) || !strings.Contains(err.Error(), fmt.Sprintf("%q", o.Name)) {
					t.Errorf("CheckOutputPaths = %v, want ErrBadDerivation naming %q", err, o.Name)
				}
			})
		}
	}
	t.Run("env var disagrees", func(t *testing.T) {
		b, _ := os.ReadFile(filepath.Join(dir, "xwhm6yg45c0k7n32xmhjj7mr4862i5f5-simple.drv"))
		d := mustParse(t, b)
		for i := range d.Env {
			if d.Env[i].Key == "out" {
				d.Env[i].Value = "/nix/store/8b3sywiv18jd58byla4npnn81kx8amvb-simplf"
			}
		}
		err := d.CheckOutputPaths("/nix/store", "simple", load)
		if !errors.Is(err, ErrBadDerivation) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("changed builder changes the paths", func(t *testing.T) {
		b, _ := os.ReadFile(filepath.Join(dir, "xwhm6yg45c0k7n32xmhjj7mr4862i5f5-simple.drv"))
		d := mustParse(t, b)
		d.Builder = "/bin/bash" // unmodified() is now false: the struct is printed
		if err := d.CheckOutputPaths("/nix/store", "simple", load); !errors.Is(err, ErrBadDerivation) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("wrong store dir", func(t *testing.T) {
		b, _ := os.ReadFile(filepath.Join(dir, "xwhm6yg45c0k7n32xmhjj7mr4862i5f5-simple.drv"))
		if err := mustParse(t, b).CheckOutputPaths("/gnu/store", "simple", load); !errors.Is(err, ErrBadDerivation) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("missing input is a load error", func(t *testing.T) {
		b, _ := os.ReadFile(filepath.Join(dir, "1i083nrcizs447xx1w4g108scp9lbm05-with-deps.drv"))
		err := mustParse(t, b).CheckOutputPaths("/nix/store", "with-deps", DirLoader(t.TempDir()+"/none"))
		if err == nil || errors.Is(err, ErrBadDerivation) {
			t.Errorf("got %v, want a load error", err)
		}
	})
}

func TestHasher_Modulo(t *testing.T) {
	dir := filepath.Join(testdataDir, "drv")
	testdataDrvs(t, "drv")
	t.Run("memoised", func(t *testing.T) {
		ml := &mapLoader{files: map[string][]byte{}}
		for _, f := range testdataDrvs(t, "drv") {
			b, _ := os.ReadFile(f)
			ml.files["/nix/store/"+filepath.Base(f)] = b
		}
		h := NewHasher(ml.load)
		for i := 0; i < 3; i++ {
			if _, err := h.Modulo("/nix/store/1i083nrcizs447xx1w4g108scp9lbm05-with-deps.drv"); err != nil {
				t.Fatal(err)
			}
		}
		for p, n := range ml.loads {
			if n != 1 {
				t.Errorf("%s loaded %d times", p, n)
			}
		}
		if len(ml.loads) != 3 {
			t.Errorf("loaded %v", ml.loads)
		}
	})
	t.Run("input without inputs hashes its own bytes", func(t *testing.T) {
		p := "/nix/store/xwhm6yg45c0k7n32xmhjj7mr4862i5f5-simple.drv"
		b, _ := os.ReadFile(filepath.Join(dir, filepath.Base(p)))
		m, err := NewHasher(DirLoader(dir)).Modulo(p)
		if err != nil {
			t.Fatal(err)
		}
		if m != sha256.Sum256(b) {
			t.Error("modulo is not sha256 of the file")
		}
	})
	t.Run("foreign bytes are hashed as written", func(t *testing.T) {
		// Guix writes control bytes as \x1b; Nix would read that as "x1b"
		// and print it differently. The modulo hash must use the bytes.
		guixish := []byte(`Derive([("out","/gnu/store/8b3sywiv18jd58byla4npnn81kx8amvb-a","","")],[],[],"x86_64-linux","/bin/sh",[],[("c","\x1b[0m"),("out","/gnu/store/8b3sywiv18jd58byla4npnn81kx8amvb-a")])`)
		p := "/gnu/store/xwhm6yg45c0k7n32xmhjj7mr4862i5f5-a.drv"
		m, err := NewHasher((&mapLoader{files: map[string][]byte{p: guixish}}).load).Modulo(p)
		if err != nil {
			t.Fatal(err)
		}
		if m != sha256.Sum256(guixish) {
			t.Error("modulo is not sha256 of the original bytes")
		}
		d := mustParse(t, guixish)
		if v, _ := d.Getenv("c"); v != "x1b[0m" || bytes.Equal(d.ATerm(), guixish) {
			t.Errorf("decoded %q", v)
		}
		// Masking edits the original bytes too.
		masked := d.splice(map[string][]string{}, true)
		want := `Derive([("out","","","")],[],[],"x86_64-linux","/bin/sh",[],[("c","\x1b[0m"),("out","")])`
		if string(masked) != want {
			t.Errorf("masked\n got %s\nwant %s", masked, want)
		}
	})
	t.Run("cycle", func(t *testing.T) {
		a := "/nix/store/xwhm6yg45c0k7n32xmhjj7mr4862i5f5-a.drv"
		b := "/nix/store/1i083nrcizs447xx1w4g108scp9lbm05-b.drv"
		mk := func(in string) []byte {
			return []byte(`Derive([("out","/nix/store/8b3sywiv18jd58byla4npnn81kx8amvb-x","","")],[("` + in + `",["out"])],[],"s","b",[],[])`)
		}
		ml := &mapLoader{files: map[string][]byte{a: mk(b), b: mk(a)}}
		if _, err := NewHasher(ml.load).Modulo(a); !errors.Is(err, ErrBadDerivation) {
			t.Errorf("Modulo = %v", err)
		}
		if _, _, err := DrvClosure(a, ml.load); !errors.Is(err, ErrBadDerivation) {
			t.Errorf("DrvClosure = %v", err)
		}
	})
}

func TestDrvClosure(t *testing.T) {
	dir := filepath.Join(testdataDir, "drv")
	testdataDrvs(t, "drv")
	load := DirLoader(dir)
	t.Run("with-deps", func(t *testing.T) {
		drvs, srcs, err := DrvClosure("/nix/store/1i083nrcizs447xx1w4g108scp9lbm05-with-deps.drv", load)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{
			"/nix/store/xwhm6yg45c0k7n32xmhjj7mr4862i5f5-simple.drv",
			"/nix/store/zs3ij6ki9qgj2q7clg24v8fk937nvi00-multi-out.drv",
			"/nix/store/1i083nrcizs447xx1w4g108scp9lbm05-with-deps.drv",
		}
		if !reflect.DeepEqual(drvs, want) || len(srcs) != 0 {
			t.Errorf("DrvClosure = %v, %v", drvs, srcs)
		}
	})
	t.Run("sources", func(t *testing.T) {
		drvs, srcs, err := DrvClosure("/nix/store/a8fplna2gpgpl3d7cb1i83ygl0y5hv8y-tree.drv", load)
		if err != nil {
			t.Fatal(err)
		}
		if len(drvs) != 1 || !reflect.DeepEqual(srcs, []string{"/nix/store/2dl21k00ig52341gzimwfj4fy4a6vd3s-build-tree.sh"}) {
			t.Errorf("DrvClosure = %v, %v", drvs, srcs)
		}
	})
	t.Run("order: inputs before dependents", func(t *testing.T) {
		ml := &mapLoader{files: map[string][]byte{}}
		for _, f := range testdataDrvs(t, "drv") {
			b, _ := os.ReadFile(f)
			ml.files["/nix/store/"+filepath.Base(f)] = b
		}
		ml.files[barDrvPath], ml.files[fooDrvPath] = []byte(barDrv), []byte(fooDrv)
		for root := range ml.files {
			drvs, _, err := DrvClosure(root, ml.load)
			if err != nil {
				t.Fatal(err)
			}
			pos := map[string]int{}
			for i, p := range drvs {
				pos[p] = i
			}
			if drvs[len(drvs)-1] != root {
				t.Errorf("%s is not last in %v", root, drvs)
			}
			for _, p := range drvs {
				d := mustParse(t, ml.files[p])
				for in := range d.InputDrvs {
					if j, ok := pos[in]; !ok || j >= pos[p] {
						t.Errorf("%s: input %s misplaced in %v", root, in, drvs)
					}
				}
			}
		}
	})
	t.Run("not a drv", func(t *testing.T) {
		if _, _, err := DrvClosure("/nix/store/xwhm6yg45c0k7n32xmhjj7mr4862i5f5-simple", load); !errors.Is(err, ErrBadStorePath) {
			t.Errorf("got %v", err)
		}
	})
}

func TestHasher_FillOutputPaths(t *testing.T) {
	// Blank the outputs of each real .drv as a new derivation has them;
	// filling them in must give back Nix's file byte for byte.
	for _, tc := range []struct{ dir, storeDir string }{{"drv", "/nix/store"}, {"gnu-store-drv", "/gnu/store"}} {
		t.Run(tc.dir, func(t *testing.T) {
			h := NewHasher(DirLoader(filepath.Join(testdataDir, tc.dir)))
			for _, f := range testdataDrvs(t, tc.dir) {
				b, _ := os.ReadFile(f)
				d := mustParse(t, b)
				blank := exported(d)
				blank.Outputs = append([]Output(nil), d.Outputs...)
				blank.Env = nil
				for i := range blank.Outputs {
					blank.Outputs[i].Path = ""
				}
				for _, e := range d.Env {
					if _, isOut := d.Output(e.Key); !isOut {
						blank.Env = append(blank.Env, e)
					}
				}
				name, _ := DrvName(f)
				if err := h.FillOutputPaths(&blank, tc.storeDir, name); err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				if got := blank.ATerm(); !bytes.Equal(got, b) {
					t.Errorf("%s: filled\n got %s\nwant %s", f, got, b)
				}
			}
		})
	}
}

func TestHasher_Modulo_ForgedFixedInput(t *testing.T) {
	// bar.drv with its fixed output path replaced: foo must not hash it.
	forged := strings.ReplaceAll(barDrv, "4q0pg5zpfmznxscq3avycvf9xdvx50n3", "4q0pg5zpfmznxscq3avycvf9xdvx50n4")
	ml := &mapLoader{files: map[string][]byte{barDrvPath: []byte(forged)}}
	_, err := NewHasher(ml.load).Modulo(barDrvPath)
	if !errors.Is(err, ErrBadDerivation) || !strings.Contains(err.Error(), "should be /nix/store/4q0pg5zpfmznxscq3avycvf9xdvx50n3-bar") {
		t.Errorf("Modulo = %v", err)
	}
	if err := mustParse(t, []byte(fooDrv)).CheckOutputPaths("/nix/store", "foo", ml.load); !errors.Is(err, ErrBadDerivation) {
		t.Errorf("CheckOutputPaths = %v", err)
	}
}
