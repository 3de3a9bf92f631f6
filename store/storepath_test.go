package store

import (
	"errors"
	"strings"
	"testing"
)

func TestParseStorePath(t *testing.T) {
	hash := "0hm2f1psjpcwg8fijsmr4wwxrx59s092"
	t.Run("valid", func(t *testing.T) {
		for _, tc := range []struct{ dir, in, name string }{
			{"/nix/store", "/nix/store/" + hash + "-bar.drv", "bar.drv"},
			{"/gnu/store", "/gnu/store/" + hash + "-guile-3.0.8", "guile-3.0.8"},
			{"", "/some/other/store/" + hash + "-a+b-c._?=", "a+b-c._?="},
			{"/s", "/s/" + hash + "-" + strings.Repeat("x", 211), strings.Repeat("x", 211)},
		} {
			p, err := ParseStorePath(tc.dir, tc.in)
			if err != nil {
				t.Fatalf("ParseStorePath(%q, %q): %v", tc.dir, tc.in, err)
			}
			if p.Hash != hash || p.Name != tc.name || p.String() != tc.in || p.Base() != hash+"-"+tc.name {
				t.Errorf("ParseStorePath(%q) = %+v", tc.in, p)
			}
			if HashPart(tc.in) != hash || HashPart(p.Base()) != hash {
				t.Errorf("HashPart(%q) = %q", tc.in, HashPart(tc.in))
			}
		}
	})
	t.Run("invalid", func(t *testing.T) {
		for _, tc := range []struct{ dir, in string }{
			{"/nix/store", "/gnu/store/" + hash + "-x"},           // wrong dir
			{"/nix/store", "/nix/store/" + hash + "-"},            // empty name
			{"/nix/store", "/nix/store/" + hash},                  // no name
			{"/nix/store", "/nix/store/" + hash[:31] + "-x"},      // short hash
			{"/nix/store", "/nix/store/" + hash[:31] + "e-x"},     // e is not nix32
			{"/nix/store", "/nix/store/" + hash + "-a b"},         // space
			{"/nix/store", "/nix/store/" + hash + "-a/b"},         // slash
			{"/nix/store", "/nix/store/" + hash + "-é"},           // non-ASCII
			{"", "nix/store/" + hash + "-x"},                      // relative dir
			{"", hash + "-x"},                                     // no dir
			{"", "/nix//store/" + hash + "-x"},                    // non-canonical dir
			{"", "/" + hash + "-x"},                               // empty dir
			{"/s", "/s/" + hash + "-" + strings.Repeat("x", 212)}, // too long
		} {
			if _, err := ParseStorePath(tc.dir, tc.in); !errors.Is(err, ErrBadStorePath) {
				t.Errorf("ParseStorePath(%q, %q) = %v, want ErrBadStorePath", tc.dir, tc.in, err)
			}
		}
		if HashPart("/nix/store/short") != "" {
			t.Error("HashPart of a short name is not empty")
		}
	})
}

func TestMakeStorePath(t *testing.T) {
	t.Run("text path of bar.drv", func(t *testing.T) {
		got := MakeTextPath("/nix/store", "bar.drv", []byte(barDrv), nil)
		if want := "/nix/store/0hm2f1psjpcwg8fijsmr4wwxrx59s092-bar.drv"; got != want {
			t.Errorf("MakeTextPath = %s, want %s", got, want)
		}
	})
	t.Run("recursive sha256 fixed output is a source path", func(t *testing.T) {
		h, err := ParseHashAs("sha256", "08813cbee9903c62be4c5027726a418a300da4500b2d369d3af9286f4815ceba")
		if err != nil {
			t.Fatal(err)
		}
		got := MakeFixedOutputPath("/nix/store", "bar", true, h, nil)
		if want := "/nix/store/4q0pg5zpfmznxscq3avycvf9xdvx50n3-bar"; got != want {
			t.Errorf("got %s, want %s", got, want)
		}
		if src := MakeSourcePath("/nix/store", "bar", h, nil, false); src != got {
			t.Errorf("MakeSourcePath = %s, want %s", src, got)
		}
	})
	t.Run("recursive sha1 fixed output", func(t *testing.T) {
		h, err := ParseHashAs("sha1", "0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33")
		if err != nil {
			t.Fatal(err)
		}
		got := MakeFixedOutputPath("/nix/store", "bar", true, h, nil)
		if want := "/nix/store/mp57d33657rf34lzvlbpfa1gjfv5gmpg-bar"; got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	})
	t.Run("flat sha256 fixed output from testdata", func(t *testing.T) {
		h, err := ParseHashAs("sha256", "adcf791ae2803c0c10f0dab9c430c39ac580bf95d6a834a248f4dedd72c69665")
		if err != nil {
			t.Fatal(err)
		}
		got := MakeFixedOutputPath("/nix/store", "fixed-flat", false, h, nil)
		if want := "/nix/store/q613jsl6l28igwf4p1pwkzidxdry19hl-fixed-flat"; got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	})
	t.Run("store dir is part of the fingerprint", func(t *testing.T) {
		a := MakeTextPath("/nix/store", "x", []byte("x"), nil)
		b := MakeTextPath("/gnu/store", "x", []byte("x"), nil)
		if HashPart(a) == HashPart(b) || !strings.HasPrefix(b, "/gnu/store/") {
			t.Errorf("%s and %s", a, b)
		}
	})
	t.Run("references are sorted and change the path", func(t *testing.T) {
		r1, r2 := "/nix/store/0hm2f1psjpcwg8fijsmr4wwxrx59s092-a", "/nix/store/4q0pg5zpfmznxscq3avycvf9xdvx50n3-b"
		a := MakeTextPath("/nix/store", "x", []byte("x"), []string{r1, r2})
		b := MakeTextPath("/nix/store", "x", []byte("x"), []string{r2, r1})
		c := MakeTextPath("/nix/store", "x", []byte("x"), []string{r1})
		if a != b || a == c {
			t.Errorf("a=%s b=%s c=%s", a, b, c)
		}
	})
	t.Run("output path names", func(t *testing.T) {
		if OutputPathName("multi", "out") != "multi" || OutputPathName("multi", "dev") != "multi-dev" {
			t.Error("OutputPathName")
		}
	})
}
