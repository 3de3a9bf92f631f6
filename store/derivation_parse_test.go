package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseDerivation_Fields(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testdataDir, "drv", "7jjsl9ys1s0y2y9mac8w5j5s9cwiclmr-escapes.drv"))
	if err != nil {
		t.Fatal(err)
	}
	d := mustParse(t, b)
	if v, _ := d.Getenv("weird"); v != "quote\" backslash\\ newline\n tab\t dollar$ end" {
		t.Errorf("weird = %q", v)
	}
	if d.Platform != "x86_64-linux" || d.Builder != "/bin/sh" || len(d.Args) != 2 || d.Args[1] != `printf '%s' "$weird" > $out` {
		t.Errorf("fields: %q %q %q", d.Platform, d.Builder, d.Args)
	}
	if d.IsFixedOutput() || !reflect.DeepEqual(d.OutputNames(), []string{"out"}) {
		t.Errorf("outputs %v", d.Outputs)
	}

	multi, _ := os.ReadFile(filepath.Join(testdataDir, "drv", "zs3ij6ki9qgj2q7clg24v8fk937nvi00-multi-out.drv"))
	m := mustParse(t, multi)
	if !reflect.DeepEqual(m.OutputNames(), []string{"dev", "doc", "out"}) {
		t.Errorf("multi outputs %v", m.OutputNames())
	}
	if o, ok := m.Output("dev"); !ok || o.Kind() != OutputInputAddressed || !strings.HasSuffix(o.Path, "-multi-out-dev") {
		t.Errorf("dev = %+v", o)
	}
	if _, ok := m.Output("lib"); ok {
		t.Error("lib found")
	}

	fixed, _ := os.ReadFile(filepath.Join(testdataDir, "drv", "946ii9b44kzhyq9d665ix0rkj3i8qn45-fixed-flat.drv"))
	f := mustParse(t, fixed)
	h, rec, err := f.Outputs[0].FixedHash()
	if !f.IsFixedOutput() || err != nil || rec || h.Algo != SHA256 {
		t.Errorf("fixed: %v %v %v", h, rec, err)
	}
}

func TestParseDerivation_ControlBytes(t *testing.T) {
	// Every byte value in every escaped field survives print → parse, and
	// Nix's escaping rules are the only ones applied.
	var all []byte
	for c := 0; c < 256; c++ {
		all = append(all, byte(c))
	}
	d := &Derivation{
		Outputs:  []Output{{Name: "out", Path: "/nix/store/8b3sywiv18jd58byla4npnn81kx8amvb-x"}},
		Platform: "x86_64-linux",
		Builder:  string(all),
		Args:     []string{string(all), "", `\`},
		Env:      []EnvVar{{Key: "", Value: "v"}, {Key: string(all), Value: string(all)}},
	}
	b := d.ATerm()
	if bytes.Contains(b, []byte("\n")) || bytes.Contains(b, []byte("\r")) || bytes.Contains(b, []byte("\t")) {
		t.Error("LF, CR or TAB printed raw")
	}
	if !bytes.Contains(b, []byte{0, 1, 0x1b, 0x7f, 0x80, 0xff}[:2]) {
		t.Error("control bytes were escaped")
	}
	got := mustParse(t, b)
	if !reflect.DeepEqual(exported(got), exported(d)) {
		t.Errorf("round trip changed the derivation")
	}
}

func TestParseDerivation_Rejects(t *testing.T) {
	const out = `("out","/nix/store/8b3sywiv18jd58byla4npnn81kx8amvb-x","","")`
	ok := `Derive([` + out + `],[],[],"s","b",["a"],[("k","v")])`
	if _, err := ParseDerivation([]byte(ok)); err != nil {
		t.Fatalf("base case: %v", err)
	}
	cases := map[string]string{
		"empty":               "",
		"trailing newline":    ok + "\n",
		"trailing bytes":      ok + "x",
		"whitespace":          `Derive([` + out + `], [],[],"s","b",[],[])`,
		"wrong head":          strings.Replace(ok, "Derive", "Derivx", 1),
		"versioned form":      `DrvWithVersion("xp-dyn-drv",[` + out + `],[],[],"s","b",[],[])`,
		"truncated":           ok[:len(ok)-3],
		"unterminated string": `Derive([` + out + `],[],[],"s","b`,
		"backslash at end":    `Derive([` + out + `],[],[],"s","b\`,
		"leading comma":       `Derive([,` + out + `],[],[],"s","b",[],[])`,
		"trailing comma":      `Derive([` + out + `,],[],[],"s","b",[],[])`,
		"missing comma":       `Derive([` + out + `],[],[],"s","b",["a""b"],[])`,
		"unsorted env":        `Derive([` + out + `],[],[],"s","b",[],[("k","v"),("a","v")])`,
		"duplicate env":       `Derive([` + out + `],[],[],"s","b",[],[("k","v"),("k","w")])`,
		"unsorted outputs":    `Derive([("out","/nix/store/8b3sywiv18jd58byla4npnn81kx8amvb-x","",""),("dev","/nix/store/8b3sywiv18jd58byla4npnn81kx8amvb-x-dev","","")],[],[],"s","b",[],[])`,
		"duplicate outputs":   `Derive([` + out + `,` + out + `],[],[],"s","b",[],[])`,
		"unsorted srcs":       `Derive([` + out + `],[],["/nix/store/xwhm6yg45c0k7n32xmhjj7mr4862i5f5-b","/nix/store/8b3sywiv18jd58byla4npnn81kx8amvb-a"],"s","b",[],[])`,
		"unsorted input outs": `Derive([` + out + `],[("/nix/store/xwhm6yg45c0k7n32xmhjj7mr4862i5f5-a.drv",["out","dev"])],[],"s","b",[],[])`,
		"unsorted inputs":     `Derive([` + out + `],[("/nix/store/xwhm6yg45c0k7n32xmhjj7mr4862i5f5-b.drv",["out"]),("/nix/store/8b3sywiv18jd58byla4npnn81kx8amvb-a.drv",["out"])],[],"s","b",[],[])`,
		"input not a drv":     `Derive([` + out + `],[("/nix/store/xwhm6yg45c0k7n32xmhjj7mr4862i5f5-a",["out"])],[],"s","b",[],[])`,
		"relative src":        `Derive([` + out + `],[],["xwhm6yg45c0k7n32xmhjj7mr4862i5f5-a"],"s","b",[],[])`,
		"bad hash part":       `Derive([("out","/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x","","")],[],[],"s","b",[],[])`,
		"mixed store dirs":    `Derive([` + out + `],[],["/gnu/store/xwhm6yg45c0k7n32xmhjj7mr4862i5f5-a"],"s","b",[],[])`,
		"bad output name":     `Derive([("o t","/nix/store/8b3sywiv18jd58byla4npnn81kx8amvb-x","","")],[],[],"s","b",[],[])`,
		"empty output name":   `Derive([("","/nix/store/8b3sywiv18jd58byla4npnn81kx8amvb-x","","")],[],[],"s","b",[],[])`,
		"backslash in path":   `Derive([("out","/nix/store/8b3sywiv18jd58byla4npnn81kx8amvb-\x","","")],[],[],"s","b",[],[])`,
		"backslash platform":  `Derive([` + out + `],[],[],"s\"","b",[],[])`,
		"unknown algo":        `Derive([("out","/nix/store/8b3sywiv18jd58byla4npnn81kx8amvb-x","sha3","00")],[],[],"s","b",[],[])`,
		"short digest":        `Derive([("out","/nix/store/8b3sywiv18jd58byla4npnn81kx8amvb-x","sha256","00")],[],[],"s","b",[],[])`,
		"hash without algo":   `Derive([("out","/nix/store/8b3sywiv18jd58byla4npnn81kx8amvb-x","","00")],[],[],"s","b",[],[])`,
		"fixed without path":  `Derive([("out","","sha1","0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33")],[],[],"s","b",[],[])`,
		"fixed among several": `Derive([("dev","/nix/store/8b3sywiv18jd58byla4npnn81kx8amvb-x-dev","",""),("out","/nix/store/8b3sywiv18jd58byla4npnn81kx8amvb-x","sha1","0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33")],[],[],"s","b",[],[])`,
		"fixed not out":       `Derive([("bin","/nix/store/8b3sywiv18jd58byla4npnn81kx8amvb-x","sha1","0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33")],[],[],"s","b",[],[])`,
		"floating with path":  `Derive([("out","/nix/store/8b3sywiv18jd58byla4npnn81kx8amvb-x","r:sha256","")],[],[],"s","b",[],[])`,
		"tuple too short":     `Derive([("out","/nix/store/8b3sywiv18jd58byla4npnn81kx8amvb-x","")],[],[],"s","b",[],[])`,
		"env pair too long":   `Derive([` + out + `],[],[],"s","b",[],[("k","v","w")])`,
		"unquoted":            `Derive([` + out + `],[],[],s,"b",[],[])`,
		"nested list in args": `Derive([` + out + `],[],[],"s","b",[["a"]],[])`,
		"missing env list":    `Derive([` + out + `],[],[],"s","b",[])`,
		"no closing paren":    `Derive([` + out + `],[],[],"s","b",[],[]`,
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			if d, err := ParseDerivation([]byte(in)); !errors.Is(err, ErrBadDerivation) {
				t.Errorf("ParseDerivation(%q) = %v, %v; want ErrBadDerivation", in, d, err)
			}
		})
	}
	t.Run("experimental kinds parse but do not check", func(t *testing.T) {
		for _, o := range []string{
			`("out","","r:sha256","")`,       // floating
			`("out","","","")`,               // deferred
			`("out","","r:sha256","impure")`, // impure
		} {
			d, err := ParseDerivation([]byte(`Derive([` + o + `],[],[],"s","b",[],[("out","")])`))
			if err != nil {
				t.Fatalf("%s: %v", o, err)
			}
			if err := d.CheckOutputPaths("/nix/store", "x", DirLoader()); !errors.Is(err, ErrBadDerivation) {
				t.Errorf("%s: CheckOutputPaths = %v", o, err)
			}
		}
	})
}

func TestDrvName(t *testing.T) {
	for in, want := range map[string]string{
		"/nix/store/0hm2f1psjpcwg8fijsmr4wwxrx59s092-bar.drv":   "bar",
		"0hm2f1psjpcwg8fijsmr4wwxrx59s092-hello-2.12.1.drv":     "hello-2.12.1",
		"/gnu/store/0hm2f1psjpcwg8fijsmr4wwxrx59s092-a.drv.drv": "a.drv",
	} {
		if got, err := DrvName(in); err != nil || got != want {
			t.Errorf("DrvName(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{
		"/nix/store/0hm2f1psjpcwg8fijsmr4wwxrx59s092-bar",
		"/nix/store/0hm2f1psjpcwg8fijsmr4wwxrx59s092-.drv",
		"bar.drv",
	} {
		if _, err := DrvName(in); !errors.Is(err, ErrBadStorePath) {
			t.Errorf("DrvName(%q) = %v", in, err)
		}
	}
}

func FuzzParseDerivation(f *testing.F) {
	for _, dir := range []string{"drv", "gnu-store-drv"} {
		files, _ := filepath.Glob(filepath.Join(testdataDir, dir, "*.drv"))
		for _, file := range files {
			if b, err := os.ReadFile(file); err == nil {
				f.Add(b)
			}
		}
	}
	f.Add([]byte(barDrv))
	f.Add([]byte(fooDrv))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseDerivation(b)
		if err != nil {
			if !errors.Is(err, ErrBadDerivation) {
				t.Fatalf("error %v does not wrap ErrBadDerivation", err)
			}
			return
		}
		printed := d.ATerm()
		d2, err := ParseDerivation(printed)
		if err != nil {
			t.Fatalf("printed form does not parse: %v\n%q", err, printed)
		}
		if !reflect.DeepEqual(exported(d), exported(d2)) {
			t.Fatalf("parse → print → parse changed the derivation\n%q", printed)
		}
		if again := d2.ATerm(); !bytes.Equal(again, printed) {
			t.Fatalf("printing is not stable:\n%q\n%q", printed, again)
		}
		// Hashing and path computation must not panic on anything parsed.
		_, _ = NewHasher(func(string) ([]byte, error) { return nil, os.ErrNotExist }).OutputPaths(d, "/nix/store", "x")
		_ = d.References()
		_ = d.StoreDir()
	})
}
