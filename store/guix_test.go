package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const guixTestdata = "../testdata/guix"

func readGuix(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(guixTestdata, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func guixStems(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(guixTestdata, "narinfo", "*.narinfo"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no guix narinfos: %v", err)
	}
	var stems []string
	for _, f := range files {
		stems = append(stems, strings.TrimSuffix(filepath.Base(f), ".narinfo"))
	}
	return stems
}

func TestGuixSecretKey_SignNarInfoBody(t *testing.T) {
	sk, err := ParseGuixSecretKey(readGuix(t, "signing-key.sec"))
	if err != nil {
		t.Fatal(err)
	}
	for _, stem := range guixStems(t) {
		t.Run(stem, func(t *testing.T) {
			body := readGuix(t, "details/"+stem+".signed-body")
			raw := readGuix(t, "narinfo/"+stem+".narinfo")
			sum := sha256.Sum256(body)
			if want := strings.TrimSpace(string(readGuix(t, "details/"+stem+".body-sha256.hex"))); hex.EncodeToString(sum[:]) != want {
				t.Fatalf("body sha256 %x, want %s", sum, want)
			}
			if !bytes.HasPrefix(raw, body) {
				t.Fatal("signed body is not the narinfo's prefix")
			}
			got := sk.SignNarInfoBody(body, "guix-vec.example.org")
			ni, err := ParseNarInfo(raw)
			if err != nil {
				t.Fatal(err)
			}
			if got != ni.Signature {
				t.Errorf("Signature\n got %s\nwant %s", got, ni.Signature)
			}
			if sexpText := sk.guixSignatureSexp(body).advanced(); !bytes.Equal(sexpText, readGuix(t, "details/"+stem+".signature.sexp")) {
				t.Errorf("signature sexp\n got %q\nwant %q", sexpText, readGuix(t, "details/"+stem+".signature.sexp"))
			}
		})
	}
}

func TestVerifyGuixNarInfo(t *testing.T) {
	acl, err := ParseGuixACL(readGuix(t, "acl"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := ParseGuixACL(readGuix(t, "negative/N3-other-acl"))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ParseGuixPublicKey(readGuix(t, "signing-key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	acls := map[string]GuixACL{"acl": acl, "negative/N3-other-acl": other}
	verdicts := map[string]error{
		"valid-signature":   nil,
		"hash-mismatch":     ErrGuixHashMismatch,
		"invalid-signature": ErrGuixInvalidSignature,
		"unauthorized-key":  ErrGuixUnauthorizedKey,
		"unsigned":          ErrGuixUnsigned,
		"corrupt-signature": ErrGuixCorruptSignature,
	}
	lines := strings.Split(strings.TrimSpace(string(readGuix(t, "details/guix-verdicts.txt"))), "\n")
	for _, l := range lines {
		// narinfo/01-….narinfo [acl: acl] valid-narinfo?=#t status=valid-signature
		f := strings.Fields(l)
		file, aclName, valid, status := f[0], strings.TrimSuffix(f[2], "]"), strings.TrimPrefix(f[3], "valid-narinfo?="), strings.TrimPrefix(f[4], "status=")
		t.Run(file+"/"+aclName, func(t *testing.T) {
			want, ok := verdicts[status]
			if !ok {
				t.Fatalf("unknown status %q", status)
			}
			raw := readGuix(t, file)
			got := VerifyGuixNarInfo(raw, acls[aclName])
			if (got == nil) != (valid == "#t") {
				t.Fatalf("valid = %v, Guix says %s (%v)", got == nil, valid, got)
			}
			if want == nil && got != nil || want != nil && !errors.Is(got, want) {
				t.Fatalf("got %v, want %s", got, status)
			}
			if aclName == "acl" {
				if single := VerifyGuixNarInfoKey(raw, pub); (single == nil) != (got == nil) {
					t.Errorf("with signing-key.pub: %v, with acl: %v", single, got)
				}
			}
		})
	}
}

func TestParseGuixSecretKey(t *testing.T) {
	for _, dir := range []string{"", "unauthorized-key/"} {
		t.Run("files "+dir, func(t *testing.T) {
			secText, pubText := readGuix(t, dir+"signing-key.sec"), readGuix(t, dir+"signing-key.pub")
			sk, err := ParseGuixSecretKey(secText)
			if err != nil {
				t.Fatal(err)
			}
			pk, err := ParseGuixPublicKey(pubText)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(sk.SecretKeyText(), secText) || !bytes.Equal(sk.PublicKeyText(), pubText) || !bytes.Equal(pk.Text(), pubText) {
				t.Errorf("key files do not print back:\n%s\n%s", sk.SecretKeyText(), sk.PublicKeyText())
			}
			if !sk.Public().Equal(pk) {
				t.Error("secret key's public half differs from signing-key.pub")
			}
		})
	}
	t.Run("acl", func(t *testing.T) {
		pk, _ := ParseGuixPublicKey(readGuix(t, "signing-key.pub"))
		other, _ := ParseGuixPublicKey(readGuix(t, "unauthorized-key/signing-key.pub"))
		if got := NewGuixACL(pk, pk).Text(); !bytes.Equal(got, readGuix(t, "acl")) {
			t.Errorf("acl\n%s", got)
		}
		acl, err := ParseGuixACL(readGuix(t, "acl"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(acl.Text(), readGuix(t, "acl")) || !acl.Authorizes(pk) || acl.Authorizes(other) {
			t.Error("acl does not authorize exactly signing-key.pub")
		}
	})
	t.Run("rejects", func(t *testing.T) {
		pub := string(readGuix(t, "signing-key.pub"))
		for name, in := range map[string]string{
			"not sexp":      "hello",
			"public as sec": pub,
			"other curve":   strings.Replace(string(readGuix(t, "signing-key.sec")), "Ed25519", "NIST P-256", 1),
			"q is not d·G":  strings.Replace(string(readGuix(t, "signing-key.sec")), "#1A47", "#1B47", 1),
			"d missing":     strings.Replace(string(readGuix(t, "signing-key.sec")), "(d ", "(e ", 1),
		} {
			t.Run(name, func(t *testing.T) {
				if _, err := ParseGuixSecretKey([]byte(in)); !errors.Is(err, ErrBadKey) {
					t.Errorf("got %v", err)
				}
			})
		}
		if _, err := ParseGuixPublicKey(readGuix(t, "acl")); !errors.Is(err, ErrBadKey) {
			t.Errorf("acl accepted as a public key: %v", err)
		}
	})
}

func TestGenerateGuixKey(t *testing.T) {
	sk, err := GenerateGuixKey()
	if err != nil {
		t.Fatal(err)
	}
	sk2, err := ParseGuixSecretKey(sk.SecretKeyText())
	if err != nil {
		t.Fatalf("generated key does not parse: %v\n%s", err, sk.SecretKeyText())
	}
	pk, err := ParseGuixPublicKey(sk.PublicKeyText())
	if err != nil {
		t.Fatal(err)
	}
	if sk2.D.Cmp(sk.D) != 0 || !pk.Equal(sk.Public()) || sk.D.BitLen() != 255 || sk.D.Bit(0)|sk.D.Bit(1)|sk.D.Bit(2) != 0 {
		t.Fatalf("generated key: d=%x", sk.D)
	}
	if !bytes.HasPrefix(sk.PublicKeyText(), []byte("(public-key \n (ecc \n  (curve Ed25519)\n  (q ")) {
		t.Errorf("public key layout:\n%s", sk.PublicKeyText())
	}
}

func TestGuixSecretKey_GuixNarInfoText(t *testing.T) {
	gsk, _ := ParseGuixSecretKey(readGuix(t, "signing-key.sec"))
	gpk, _ := ParseGuixPublicKey(readGuix(t, "signing-key.pub"))
	sk, pk := readNixKeys(t)
	raw, err := os.ReadFile(filepath.Join(narinfoNixTestdata, "cache-none", "5i9dv28raa78ky07vchzp8jb3krm8qg8.narinfo"))
	if err != nil {
		t.Fatal(err)
	}
	ni, _ := ParseNarInfo(raw)
	ni.Sigs = nil
	sk.SignNarInfo(ni, "/nix/store")
	text := gsk.GuixNarInfoText(ni, "node-1")
	t.Run("guix", func(t *testing.T) {
		if err := VerifyGuixNarInfoKey(text, gpk); err != nil {
			t.Fatalf("%v\n%s", err, text)
		}
		tampered := bytes.Replace(text, []byte("NarSize: 784"), []byte("NarSize: 785"), 1)
		if err := VerifyGuixNarInfoKey(tampered, gpk); !errors.Is(err, ErrGuixHashMismatch) {
			t.Fatalf("tampered: %v", err)
		}
	})
	t.Run("nix", func(t *testing.T) {
		back, err := ParseNarInfo(text)
		if err != nil {
			t.Fatal(err)
		}
		if !pk.VerifyNarInfo(back, "/nix/store") {
			t.Fatal("Nix Sig does not verify")
		}
		if !bytes.Equal(back.Bytes(), ni.Bytes()) {
			t.Errorf("Nix view differs:\n%s\n%s", back.Bytes(), ni.Bytes())
		}
	})
	t.Run("layout", func(t *testing.T) {
		want := "StorePath: /nix/store/5i9dv28raa78ky07vchzp8jb3krm8qg8-with-deps\nNarHash: sha256:1ih2s9n7frf4qfvghf74hslbiiqif6svv5swwnxrfwqnp3x9h2x0\nNarSize: 784\n" +
			"References: 8b3sywiv18jd58byla4npnn81kx8amvb-simple k2y3gvm23lwcrdcvhk829758igidjh69-multi-out-dev\nDeriver: 1i083nrcizs447xx1w4g108scp9lbm05-with-deps.drv\nSignature: 1;node-1;"
		if !bytes.HasPrefix(text, []byte(want)) {
			t.Errorf("layout:\n%s", text)
		}
	})
}

func TestVerifyGuixNarInfo_Crafted(t *testing.T) {
	acl, _ := ParseGuixACL(readGuix(t, "acl"))
	raw := string(readGuix(t, "narinfo/01-hello-zstd-lzip.narinfo"))
	ni, _ := ParseNarInfo([]byte(raw))
	withSig := func(v string) []byte { return []byte(strings.Replace(raw, ni.Signature, v, 1)) }
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"version 2", withSig("2" + ni.Signature[1:]), ErrGuixUnsigned},
		{"two parts", withSig("1;" + b64("(a)")), ErrGuixUnsigned},
		{"bad base64", withSig("1;h;!!!"), ErrGuixUnsigned},
		{"not a sexp", withSig("1;h;" + b64("(signature")), ErrGuixUnsigned},
		{"no data", withSig("1;h;" + b64("(signature (public-key (ecc (curve Ed25519))))")), ErrGuixCorruptSignature},
		{"no Signature", []byte(strings.Replace(raw, "Signature:", "Signaturx:", 1)), ErrGuixUnsigned},
		{"not fields", []byte("garbage\n" + raw), ErrBadNarInfo},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := VerifyGuixNarInfo(tc.in, acl); !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func BenchmarkGuixSecretKey_SignNarInfoBody(b *testing.B) {
	sk, _ := ParseGuixSecretKey(readGuix(b, "signing-key.sec"))
	body := readGuix(b, "details/01-hello-zstd-lzip.signed-body")
	for b.Loop() {
		sk.SignNarInfoBody(body, "h")
	}
}

func BenchmarkVerifyGuixNarInfo(b *testing.B) {
	acl, _ := ParseGuixACL(readGuix(b, "acl"))
	raw := readGuix(b, "narinfo/01-hello-zstd-lzip.narinfo")
	for b.Loop() {
		if err := VerifyGuixNarInfo(raw, acl); err != nil {
			b.Fatal(err)
		}
	}
}
