package gossip

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

func fullMeta() Meta {
	return Meta{
		Systems:  []string{"x86_64-linux", "i686-linux"},
		Features: []string{"kvm", "big-parallel", "nixos-test"},
		MaxJobs:  16,
		Running:  3,
		Load:     2.75,
		FreeDisk: 512 << 30,
		HTTP:     "10.1.2.3:7700",
		Raft:     "10.1.2.3:7701",
		P2P:      "/ip4/10.1.2.3/tcp/7703",
		PeerID:   "12D3KooWGRUVh7XpZ9mGRa1Lkc9vqfGxBA5tDiuoVxDZLhS3HHrJ",
		Version:  "0.1.0",
		Builder:  "nix",
	}
}

func TestEncodeMeta(t *testing.T) {
	t.Run("round trip", func(t *testing.T) {
		for _, m := range []Meta{{}, fullMeta(), {MaxJobs: -1, Running: math.MaxInt32, Load: 0.01}} {
			b, err := EncodeMeta(m)
			if err != nil {
				t.Fatalf("encode %+v: %v", m, err)
			}
			got, err := DecodeMeta(b)
			if err != nil {
				t.Fatalf("decode %x: %v", b, err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Fatalf("round trip: got %+v, want %+v", got, m)
			}
		}
	})
	t.Run("compact", func(t *testing.T) {
		b, err := EncodeMeta(fullMeta())
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > MaxMetaSize/2 {
			t.Fatalf("typical meta takes %d bytes, want at most %d", len(b), MaxMetaSize/2)
		}
	})
	t.Run("too large", func(t *testing.T) {
		m := fullMeta()
		m.Version = strings.Repeat("v", MaxMetaSize)
		_, err := EncodeMeta(m)
		if !errors.Is(err, ErrMetaTooLarge) {
			t.Fatalf("got %v, want ErrMetaTooLarge", err)
		}
	})
	t.Run("largest that fits", func(t *testing.T) {
		// Version byte, tag, 2-byte length, and 2 bytes kept for the leave mark.
		m := Meta{Version: strings.Repeat("v", MaxMetaSize-6)}
		b, err := EncodeMeta(m)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != MaxMetaSize-2 {
			t.Fatalf("encoded %d bytes, want %d", len(b), MaxMetaSize-2)
		}
		marked, err := encodeMeta(m, true)
		if err != nil || len(marked) != MaxMetaSize {
			t.Fatalf("with leave mark: %d bytes, %v", len(marked), err)
		}
		if got, leaving, err := decodeMeta(marked); err != nil || !leaving || !reflect.DeepEqual(got, m) {
			t.Fatalf("decode marked: %v %v", leaving, err)
		}
		m.Version += "v"
		if _, err := EncodeMeta(m); !errors.Is(err, ErrMetaTooLarge) {
			t.Fatalf("one byte over: got %v, want ErrMetaTooLarge", err)
		}
	})
	t.Run("non-finite load", func(t *testing.T) {
		for _, l := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
			if _, err := EncodeMeta(Meta{Load: l}); !errors.Is(err, ErrBadMeta) {
				t.Fatalf("load %v: got %v, want ErrBadMeta", l, err)
			}
		}
	})
}

func TestDecodeMeta(t *testing.T) {
	good, err := EncodeMeta(fullMeta())
	if err != nil {
		t.Fatal(err)
	}
	t.Run("skips unknown tags", func(t *testing.T) {
		b := append(bytes.Clone(good), 200, 3, 'a', 'b', 'c')
		got, err := DecodeMeta(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, fullMeta()) {
			t.Fatalf("got %+v", got)
		}
	})
	nan := []byte{metaVersion, tagLoad, 8, 0, 0, 0, 0, 0, 0, 0xf8, 0x7f}
	for name, b := range map[string][]byte{
		"empty":            {},
		"wrong version":    {2},
		"truncated length": {metaVersion, tagHTTP},
		"length past end":  {metaVersion, tagHTTP, 5, 'a'},
		"huge length":      {metaVersion, tagHTTP, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"short varint":     {metaVersion, tagMaxJobs, 1, 0x80},
		"varint slack":     {metaVersion, tagMaxJobs, 2, 0x02, 0x00},
		"short load":       {metaVersion, tagLoad, 4, 0, 0, 0, 0},
		"nan load":         nan,
		"truncated good":   good[:len(good)-1],
		"over size":        append([]byte{metaVersion, 200, 0x80, 0x04}, make([]byte, 512)...),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := DecodeMeta(b); !errors.Is(err, ErrBadMeta) {
				t.Fatalf("got %v, want ErrBadMeta", err)
			}
		})
	}
}

func FuzzDecodeMeta(f *testing.F) {
	good, err := EncodeMeta(fullMeta())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte{metaVersion})
	f.Add([]byte{metaVersion, tagMaxJobs, 1, 0x80})
	f.Add([]byte{metaVersion, 200, 3, 'a', 'b', 'c', tagSystem, 1, 'x'})
	f.Add([]byte{metaVersion, tagLeaving, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, leaving, err := decodeMeta(b)
		if err != nil {
			if !errors.Is(err, ErrBadMeta) {
				t.Fatalf("error %v does not wrap ErrBadMeta", err)
			}
			return
		}
		// Whatever decodes re-encodes, within the limit, to the same Meta.
		again, err := encodeMeta(m, leaving)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", m, err)
		}
		m2, leaving2, err := decodeMeta(again)
		if err != nil {
			t.Fatalf("decode re-encoded %x: %v", again, err)
		}
		if !reflect.DeepEqual(m, m2) || leaving != leaving2 {
			t.Fatalf("unstable: %+v then %+v", m, m2)
		}
	})
}
