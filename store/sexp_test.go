package store

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"
)

func TestSexp_Advanced(t *testing.T) {
	files := []string{"signing-key.pub", "signing-key.sec", "acl", "negative/N3-other-acl",
		"unauthorized-key/signing-key.pub", "unauthorized-key/signing-key.sec"}
	sexps, _ := filepath.Glob(filepath.Join(guixTestdata, "details", "*.signature.sexp"))
	if len(sexps) == 0 {
		t.Fatal("no signature sexps")
	}
	for _, f := range sexps {
		rel, _ := filepath.Rel(guixTestdata, f)
		files = append(files, rel)
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			in := readGuix(t, f)
			x, err := parseSexp(in)
			if err != nil {
				t.Fatal(err)
			}
			if got := x.advanced(); !bytes.Equal(got, in) {
				t.Errorf("re-printed\n%q\nwant\n%q", got, in)
			}
			// The canonical form parses to the same structure.
			y, err := parseSexp(x.canonical())
			if err != nil || !x.equal(y) {
				t.Errorf("canonical round trip: %v", err)
			}
		})
	}
}

func TestSexp_Encoding(t *testing.T) {
	for _, tc := range []struct {
		atom []byte
		want string
	}{
		{[]byte(""), `""`},
		{[]byte("Ed25519"), "Ed25519"},
		{[]byte("public-key"), "public-key"},
		{[]byte("1abc"), `"1abc"`},
		{[]byte("a b"), `"a b"`},
		{[]byte{0, 'a'}, "#0061#"},
		{[]byte{0x80}, "#80#"},
		{[]byte{'a', 0x01}, "#6101#"},
		{[]byte{'a', 0x7f}, "#617F#"},
		{[]byte{'a', 0xa0}, "#61A0#"},
		{[]byte{'a', 0, '\n', '\t', '\b', '\v', '\f', '\r', '"', '\'', '\\', 0xa1, 0xff}, "\"a\\x00\\n\\t\\b\\v\\f\\r\\\"\\'\\\\\xa1\xff\""},
	} {
		t.Run(tc.want, func(t *testing.T) {
			got := string(appendSexpAtom(nil, tc.atom))
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			x, err := parseSexp([]byte("(" + got + ")"))
			if err != nil || !bytes.Equal(x.nth(0), tc.atom) {
				t.Fatalf("parse back: %v %q", err, x.nth(0))
			}
		})
	}
}

func TestParseSexp(t *testing.T) {
	want := sList(sAtom("a"), sBytes([]byte{1, 2}), sList(sAtom("b"), sAtom("xyz")))
	for _, in := range []string{
		"(a #0102# (b xyz))",
		"(1:a2:\x01\x02(1:b3:xyz))",
		"( a |AQI=| ( b \"xyz\" ) )",
		"(a # 01 02 # (b \"x\\\ny\\172\"))",
		"(a \"\\x01\\002\"(b \"\\x78yz\"))\n",
	} {
		t.Run(in, func(t *testing.T) {
			x, err := parseSexp([]byte(in))
			if err != nil {
				t.Fatal(err)
			}
			if !x.equal(want) {
				t.Errorf("got %s", x.advanced())
			}
		})
	}
	for _, in := range []string{"", "a", "(a", "(a))", "(#0#)", "(|!|)", "(\"a)", "(5:ab)", "(a \\q)", "(\"\\q\")", "([a]b)"} {
		t.Run("bad "+in, func(t *testing.T) {
			if _, err := parseSexp([]byte(in)); !errors.Is(err, ErrBadKey) {
				t.Errorf("got %v", err)
			}
		})
	}
}

func FuzzParseSexp(f *testing.F) {
	for _, s := range []string{"signing-key.pub", "acl", "details/04-quoted-hash-atom.signature.sexp", "details/01-hello-zstd-lzip.signature.sexp"} {
		f.Add(readGuix(f, s))
	}
	f.Add([]byte("(1:a2:\x01\x02(1:b3:xyz) |AQI=| \"\\x01\\n\")"))
	f.Fuzz(func(t *testing.T, b []byte) {
		x, err := parseSexp(b)
		if err != nil {
			return
		}
		adv := x.advanced()
		y, err := parseSexp(adv)
		if err != nil {
			t.Fatalf("advanced form does not parse: %v\n%q", err, adv)
		}
		if !x.equal(y) {
			t.Fatalf("advanced round trip changed the structure:\n%q", adv)
		}
		if z, err := parseSexp(x.canonical()); err != nil || !x.equal(z) {
			t.Fatalf("canonical round trip: %v", err)
		}
	})
}
