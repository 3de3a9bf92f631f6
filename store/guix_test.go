package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const guixTestdata = "/work/shared/testdata/guix"

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
