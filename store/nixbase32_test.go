package store

import (
	"crypto/sha256"
	"errors"
	"testing"
)

func TestNix32_Vectors(t *testing.T) {
	empty := sha256.Sum256(nil)
	for _, tc := range []struct {
		in   []byte
		want string
	}{
		{[]byte{0x1f}, "0z"},
		{[]byte{0x01}, "01"},
		{nil, ""},
		{empty[:], "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"},
	} {
		got := EncodeNix32(tc.in)
		if got != tc.want {
			t.Errorf("EncodeNix32(%x) = %q, want %q", tc.in, got, tc.want)
		}
		back, err := DecodeNix32(got)
		if err != nil || string(back) != string(tc.in) {
			t.Errorf("DecodeNix32(%q) = %x, %v; want %x", got, back, err, tc.in)
		}
	}
}

func TestNix32_DecodeRejects(t *testing.T) {
	for _, s := range []string{"zz", "c0", "0e", "0", "abc!"} {
		if _, err := DecodeNix32(s); !errors.Is(err, ErrBadEncoding) {
			t.Errorf("DecodeNix32(%q) err = %v, want ErrBadEncoding", s, err)
		}
	}
}

func FuzzNix32(f *testing.F) {
	f.Add([]byte{0x1f})
	f.Add([]byte("hello world, this is twenty"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s := EncodeNix32(b)
		back, err := DecodeNix32(s)
		if err != nil || string(back) != string(b) {
			t.Fatalf("round trip %x -> %q -> %x, %v", b, s, back, err)
		}
	})
}

func TestParseHashAs_Base64Length(t *testing.T) {
	// 44 characters of unpadded base 64 decode to 33 bytes, not 32.
	if _, err := ParseHashAs("sha256", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"); !errors.Is(err, ErrBadHash) {
		t.Fatalf("err = %v, want ErrBadHash", err)
	}
	h, err := ParseHash("sha256-HDfQGvQL4ugGkd48w99EN3ppmvuxfGjwgJZLL9Bx/BM=")
	if err != nil || h.Nix32() != "04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw" {
		t.Fatalf("SRI parse = %v, %v", h, err)
	}
}
