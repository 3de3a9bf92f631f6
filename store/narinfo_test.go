package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

const narinfoNixTestdata = "../testdata/nix-2.8"

func nixNarInfoFiles(t testing.TB) []string {
	t.Helper()
	var all []string
	for _, c := range []string{"cache-none", "cache-xz", "cache-zstd"} {
		files, err := filepath.Glob(filepath.Join(narinfoNixTestdata, c, "*.narinfo"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no narinfos in %s: %v", c, err)
		}
		all = append(all, files...)
	}
	return all
}

func readNixKeys(t testing.TB) (SecretKey, PublicKey) {
	t.Helper()
	sb, err := os.ReadFile(filepath.Join(narinfoNixTestdata, "signing.sec"))
	if err != nil {
		t.Fatal(err)
	}
	pb, err := os.ReadFile(filepath.Join(narinfoNixTestdata, "signing.pub"))
	if err != nil {
		t.Fatal(err)
	}
	sk, err := ParseSecretKey(string(sb))
	if err != nil {
		t.Fatal(err)
	}
	pk, err := ParsePublicKey(string(pb))
	if err != nil {
		t.Fatal(err)
	}
	return sk, pk
}

func TestNarInfo_Bytes(t *testing.T) {
	sk, pk := readNixKeys(t)
	for _, f := range nixNarInfoFiles(t) {
		t.Run(filepath.Base(filepath.Dir(f))+"/"+filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			ni, err := ParseNarInfo(raw)
			if err != nil {
				t.Fatal(err)
			}
			if got := ni.Bytes(); !bytes.Equal(got, raw) {
				t.Fatalf("re-printed\n%s\nwant\n%s", got, raw)
			}
			if !pk.VerifyNarInfo(ni, "/nix/store") {
				t.Fatalf("Sig does not verify with signing.pub; fingerprint %s", ni.Fingerprint("/nix/store"))
			}
			if len(ni.Sigs) != 1 {
				t.Fatalf("Sigs = %v", ni.Sigs)
			}
			if got := sk.Sign(ni.Fingerprint("/nix/store")); got != ni.Sigs[0] {
				t.Fatalf("re-signed %s, want %s", got, ni.Sigs[0])
			}
			// A tampered NarSize breaks the signature.
			bad := *ni
			bad.NarSize++
			if pk.VerifyNarInfo(&bad, "/nix/store") {
				t.Fatal("tampered narinfo verifies")
			}
			// SignNarInfo on an unsigned copy restores the same Sig.
			re := *ni
			re.Sigs = nil
			sk.SignNarInfo(&re, "/nix/store")
			sk.SignNarInfo(&re, "/nix/store")
			if !bytes.Equal(re.Bytes(), raw) {
				t.Fatalf("re-signed narinfo differs:\n%s", re.Bytes())
			}
		})
	}
}

func TestNarInfo_Fingerprint(t *testing.T) {
	ni := &NarInfo{
		StorePath:  "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-b",
		NarSize:    160,
		References: []string{"xp0dpr9yz5h0fk5c5lpj7zzqjbdh3w8c-f", "0123456789abcdfghijklmnpqrsvwxyz-b"},
	}
	var err error
	ni.NarHash, err = ParseHash("sha256:0xr7px7iwmcrvc070yk7xdccxxj5d2109qrs95dgarp3fmf6jknn")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("refs", func(t *testing.T) {
		want := "1;/nix/store/0123456789abcdfghijklmnpqrsvwxyz-b;sha256:0xr7px7iwmcrvc070yk7xdccxxj5d2109qrs95dgarp3fmf6jknn;160;/nix/store/0123456789abcdfghijklmnpqrsvwxyz-b,/nix/store/xp0dpr9yz5h0fk5c5lpj7zzqjbdh3w8c-f"
		if got := ni.Fingerprint("/nix/store"); got != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	})
	t.Run("no refs, hex NarHash", func(t *testing.T) {
		h, _ := ParseHash("sha256:" + ni.NarHash.Hex())
		n := &NarInfo{StorePath: ni.StorePath, NarHash: h, NarSize: 1}
		if got, want := n.Fingerprint("/nix/store"), "1;"+ni.StorePath+";"+ni.NarHash.String()+";1;"; got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	})
}

const narinfoSample = "StorePath: /nix/store/0123456789abcdfghijklmnpqrsvwxyz-b\n" +
	"URL: nar/1n8bs9rwfk6ma2khi9vc3kwsxy0hf0dvsll4nlv1phs38pag651k.nar.zst\n" +
	"Compression: zstd\n" +
	"FileHash: sha256:1n8bs9rwfk6ma2khi9vc3kwsxy0hf0dvsll4nlv1phs38pag651k\n" +
	"FileSize: 128\n" +
	"NarHash: sha256:0xr7px7iwmcrvc070yk7xdccxxj5d2109qrs95dgarp3fmf6jknn\n" +
	"NarSize: 160\n" +
	"References: 0123456789abcdfghijklmnpqrsvwxyz-b xp0dpr9yz5h0fk5c5lpj7zzqjbdh3w8c-f\n" +
	"Deriver: lpjpdd3n3m4aqnkgnl86a9d3dz3rh2pv-b.drv\n" +
	"Sig: test-1:PNLUnVOmJpxVLRAI6J2NB24BSzO7az/Kdd7blk3K/zvG+61wSV3vv5h/pRY/L2QDyvrvtcSZk7DLXz43+sCVCQ==\n"

func TestParseNarInfo(t *testing.T) {
	t.Run("formats example", func(t *testing.T) {
		ni, err := ParseNarInfo([]byte(narinfoSample))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ni.Bytes(), []byte(narinfoSample)) {
			t.Errorf("re-printed:\n%s", ni.Bytes())
		}
		pk, _ := ParsePublicKey("test-1:/YyuNqLhOlz2nURbiO49J6yIPdsVKM1hhuR83o4fnu8=")
		if !pk.VerifyNarInfo(ni, "/nix/store") {
			t.Error("docs/formats.md §4.1 example does not verify")
		}
	})
	t.Run("nix rules", func(t *testing.T) {
		for _, tc := range []struct {
			name, change string
			want         func(*NarInfo) bool // nil: must be rejected
		}{
			{"no final newline", "CVCQ==\n|CVCQ==", nil},
			{"no StorePath", "StorePath: /nix/store/0123456789abcdfghijklmnpqrsvwxyz-b\n|", nil},
			{"bad StorePath", "0123456789abcdfghijklmnpqrsvwxyz-b\n|0123456789abcdfghijklmnpqrsvwxyz-b!\n", nil},
			{"no URL", "URL: nar/1n8bs9rwfk6ma2khi9vc3kwsxy0hf0dvsll4nlv1phs38pag651k.nar.zst\n|", nil},
			{"NarSize 0", "NarSize: 160|NarSize: 0", nil},
			{"NarSize negative", "NarSize: 160|NarSize: -1", nil},
			{"no NarHash", "NarHash: sha256:0xr7px7iwmcrvc070yk7xdccxxj5d2109qrs95dgarp3fmf6jknn\n|", nil},
			{"bad NarHash", "NarHash: sha256:0x|NarHash: sha256:0e", nil},
			{"bad reference", "References: 0123|References: e123", nil},
			{"two References", "Deriver:|References: a0shcdy681fgqc4kmcfm3spmdpzszj9g-x\nDeriver:", nil},
			{"bad CA", "Sig:|CA: fixed:md5\nSig:", nil},
			{"no Compression means bzip2", "Compression: zstd\n|", func(n *NarInfo) bool { return n.Compression == "bzip2" }},
			{"unknown-deriver", "lpjpdd3n3m4aqnkgnl86a9d3dz3rh2pv-b.drv|unknown-deriver", func(n *NarInfo) bool { return n.Deriver == "" }},
			{"empty References then another", "References: 0123|References: \nReferences: 0123", func(n *NarInfo) bool { return len(n.References) == 2 }},
			{"unknown keys ignored", "Sig:|Foo: bar\nSig:", func(n *NarInfo) bool { return bytes.Equal(n.Bytes(), []byte(narinfoSample)) }},
			{"last URL wins, groups kept", "Compression: zstd\n|Compression: zstd\nURL: other\nCompression: xz\n", func(n *NarInfo) bool {
				return n.URL == "other" && n.Compression == "xz" && len(n.Files) == 2 && n.Files[0].Compression == "zstd" && n.Files[0].FileSize == 128 && n.Files[1].FileSize == 0
			}},
			{"CA normalized", "Sig:|CA: fixed:r:sha256:" + strings.Repeat("00", 32) + "\nSig:", func(n *NarInfo) bool {
				return n.CA == "fixed:r:sha256:"+strings.Repeat("0", 52)
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				from, to, _ := strings.Cut(tc.change, "|")
				in := strings.Replace(narinfoSample, from, to, 1)
				if in == narinfoSample {
					t.Fatalf("change %q does not apply", tc.change)
				}
				ni, err := ParseNarInfo([]byte(in))
				if tc.want == nil {
					if !errors.Is(err, ErrBadNarInfo) {
						t.Fatalf("accepted or wrong error: %v", err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if !tc.want(ni) {
					t.Errorf("unexpected result %+v", ni)
				}
			})
		}
	})
	t.Run("guix narinfos", func(t *testing.T) {
		ni, err := ParseNarInfo(readGuix(t, "narinfo/01-hello-zstd-lzip.narinfo"))
		if err != nil {
			t.Fatal(err)
		}
		want := []NarFile{
			{URL: "nar/zstd/bv08fchqr40fg8ywzpjxn95ainhnkxh9-hello-2.12.1", Compression: "zstd", FileSize: 61234},
			{URL: "nar/lzip/bv08fchqr40fg8ywzpjxn95ainhnkxh9-hello-2.12.1", Compression: "lzip", FileSize: 58811},
		}
		if !reflect.DeepEqual(ni.Files, want) {
			t.Errorf("Files = %+v", ni.Files)
		}
		if !strings.HasPrefix(ni.Signature, "1;guix-vec.example.org;KHNp") || ni.URL != want[1].URL {
			t.Errorf("Signature %q URL %q", ni.Signature, ni.URL)
		}
		ni5, err := ParseNarInfo(readGuix(t, "narinfo/05-legacy-2021-layout.narinfo"))
		if err != nil {
			t.Fatal(err)
		}
		if ni5.System != "x86_64-linux" || ni5.References[0] != "lkh6fv9vphzlhmp6wba3n7sldfwwkb6d-bash-minimal-5.1.16" {
			t.Errorf("05: System %q refs %v", ni5.System, ni5.References)
		}
	})
}

// normalNarInfo is what Nix would keep of a narinfo: sets of references and
// signatures, no raw text or Guix-only data.
func normalNarInfo(ni *NarInfo) NarInfo {
	n := *ni
	n.Raw, n.Files, n.Signature = nil, nil, ""
	n.References = sortedUnique(n.References)
	n.Sigs = sortedUnique(n.Sigs)
	if len(n.References) == 0 {
		n.References = nil
	}
	if len(n.Sigs) == 0 {
		n.Sigs = nil
	}
	return n
}

func FuzzParseNarInfo(f *testing.F) {
	for _, file := range nixNarInfoFiles(f) {
		b, _ := os.ReadFile(file)
		f.Add(b)
	}
	guix, _ := filepath.Glob(filepath.Join(guixTestdata, "*", "*.narinfo"))
	for _, file := range guix {
		b, _ := os.ReadFile(file)
		f.Add(b)
	}
	f.Add([]byte(narinfoSample))
	f.Fuzz(func(t *testing.T, b []byte) {
		ni, err := ParseNarInfo(b)
		if err != nil {
			if !errors.Is(err, ErrBadNarInfo) {
				t.Fatalf("error %v does not wrap ErrBadNarInfo", err)
			}
			return
		}
		out := ni.Bytes()
		ni2, err := ParseNarInfo(out)
		if err != nil {
			t.Fatalf("re-printed narinfo does not parse: %v\n%q", err, out)
		}
		if a, b := normalNarInfo(ni), normalNarInfo(ni2); !reflect.DeepEqual(a, b) {
			t.Fatalf("round trip changed the narinfo:\n%+v\n%+v", a, b)
		}
		if out2 := ni2.Bytes(); !slices.Equal(out, out2) {
			t.Fatalf("second print differs:\n%q\n%q", out, out2)
		}
	})
}

func BenchmarkParseNarInfo(b *testing.B) {
	_, pk := readNixKeys(b)
	raw, _ := os.ReadFile(filepath.Join(narinfoNixTestdata, "cache-none", "5i9dv28raa78ky07vchzp8jb3krm8qg8.narinfo"))
	for b.Loop() {
		ni, err := ParseNarInfo(raw)
		if err != nil || !pk.VerifyNarInfo(ni, "/nix/store") {
			b.Fatal("parse or verify failed")
		}
	}
}
