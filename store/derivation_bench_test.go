package store

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// benchChain builds an in-memory chain of n derivations, each depending on
// the previous one, with a realistic env size, and returns the loader and
// the last .drv path.
func benchChain(b *testing.B, n int) (*mapLoader, string, *Derivation) {
	b.Helper()
	ml := &mapLoader{files: map[string][]byte{}}
	prev := ""
	var d *Derivation
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("pkg-%d", i)
		d = &Derivation{
			Outputs:   []Output{{Name: "dev"}, {Name: "out"}},
			InputDrvs: map[string][]string{},
			InputSrcs: []string{"/nix/store/2dl21k00ig52341gzimwfj4fy4a6vd3s-build-tree.sh"},
			Platform:  "x86_64-linux",
			Builder:   "/bin/sh",
			Args:      []string{"-e", "/nix/store/2dl21k00ig52341gzimwfj4fy4a6vd3s-build-tree.sh"},
		}
		env := map[string]string{"name": name, "system": "x86_64-linux", "builder": "/bin/sh",
			"buildPhase": strings.Repeat("make -j$NIX_BUILD_CORES \"$@\"\n", 40), "dev": "", "out": ""}
		if prev != "" {
			d.InputDrvs[prev] = []string{"dev", "out"}
			env["dep"] = prev
		}
		for _, k := range sortedKeys(env) {
			d.Env = append(d.Env, EnvVar{Key: k, Value: env[k]})
		}
		if err := NewHasher(ml.load).FillOutputPaths(d, "/nix/store", name); err != nil {
			b.Fatal(err)
		}
		text := d.ATerm()
		prev = MakeTextPath("/nix/store", name+".drv", text, d.References())
		ml.files[prev] = text
	}
	return ml, prev, d
}

func sortedKeys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	for i := range ks {
		for j := i + 1; j < len(ks); j++ {
			if ks[j] < ks[i] {
				ks[i], ks[j] = ks[j], ks[i]
			}
		}
	}
	return ks
}

func BenchmarkParseDerivation(b *testing.B) {
	raw, err := os.ReadFile(filepath.Join(testdataDir, "drv", "zs3ij6ki9qgj2q7clg24v8fk937nvi00-multi-out.drv"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := ParseDerivation(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDerivation_ATerm(b *testing.B) {
	_, _, d := benchChain(b, 1)
	b.SetBytes(int64(len(d.ATerm())))
	for b.Loop() {
		_ = d.ATerm()
	}
}

// BenchmarkDerivation_CheckOutputPaths checks the last of a 1000-long
// chain with a fresh Hasher: every input is loaded, parsed and hashed once.
func BenchmarkDerivation_CheckOutputPaths(b *testing.B) {
	ml, last, _ := benchChain(b, 1000)
	d := mustParse(b, ml.files[last])
	name, _ := DrvName(last)
	b.ResetTimer()
	for b.Loop() {
		if err := d.CheckOutputPaths("/nix/store", name, ml.load); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDrvClosure(b *testing.B) {
	ml, last, _ := benchChain(b, 1000)
	b.ResetTimer()
	for b.Loop() {
		if drvs, _, err := DrvClosure(last, ml.load); err != nil || len(drvs) != 1000 {
			b.Fatal(err, len(drvs))
		}
	}
}
