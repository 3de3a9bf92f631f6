package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/drvmesh/drvmesh/internal/testutil"
)

func TestSecretKey_Sign(t *testing.T) {
	const (
		skText = "test-1:nnqa13s9KknQFuW2B+l2KSUX61eK4u+mmkVhtWi3bP79jK42ouE6XPadRFuI7j0nrIg92xUozWGG5Hzejh+e7w=="
		pkText = "test-1:/YyuNqLhOlz2nURbiO49J6yIPdsVKM1hhuR83o4fnu8="
		fp     = "1;/nix/store/xp0dpr9yz5h0fk5c5lpj7zzqjbdh3w8c-f;sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw;120;"
		sig    = "test-1:+laQa9AblqkILnKupCuOywM+/hAfLioZQGCxwwgmJgYgSUrELPBV4a2xGe7bo3zI1QCEnxw2KzbajJ0slgczBA=="
	)
	sk, err := ParseSecretKey(skText)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("formats vector", func(t *testing.T) {
		if got := sk.Sign(fp); got != sig {
			t.Errorf("got %s, want %s", got, sig)
		}
	})
	t.Run("round trip", func(t *testing.T) {
		if sk.String() != skText || sk.Public().String() != pkText {
			t.Errorf("String: %s / %s", sk, sk.Public())
		}
	})
	t.Run("verify", func(t *testing.T) {
		pk, err := ParsePublicKey(pkText + "\n")
		if err != nil {
			t.Fatal(err)
		}
		if !pk.Verify(fp, sig) {
			t.Error("vector does not verify")
		}
		if pk.Verify(fp+"x", sig) {
			t.Error("verifies another fingerprint")
		}
		renamed := pk
		renamed.Name = "test-2"
		if renamed.Verify(fp, sig) {
			t.Error("a key of another name verifies")
		}
	})
}

func TestParseSecretKey(t *testing.T) {
	good, _ := GenerateKey("k")
	for name, in := range map[string]string{
		"no colon":      "abc",
		"no name":       ":" + strings.SplitN(good.String(), ":", 2)[1],
		"bad base64":    "k:!!!!",
		"short":         "k:AAAA",
		"public as sec": good.Public().String(),
		"halves differ": "k:" + strings.Repeat("A", 86) + "==",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseSecretKey(in); !errors.Is(err, ErrBadKey) {
				t.Errorf("got %v, want ErrBadKey", err)
			}
		})
	}
	t.Run("public", func(t *testing.T) {
		if _, err := ParsePublicKey(good.String()); !errors.Is(err, ErrBadKey) {
			t.Errorf("secret accepted as public: %v", err)
		}
	})
	t.Run("generate name", func(t *testing.T) {
		if _, err := GenerateKey("a:b"); !errors.Is(err, ErrBadKey) {
			t.Errorf("got %v", err)
		}
	})
}

// TestSecretKey_SignNarInfo checks against the real Nix: keys from
// nix-store --generate-binary-cache-key parse, and our Sig equals the one
// `nix store sign` adds to a path in a private store.
func TestSecretKey_SignNarInfo(t *testing.T) {
	testutil.RequireNix(t)
	dir := t.TempDir()
	env := testutil.NixEnv(dir, "")
	nix := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = env
		out, err := cmd.Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				t.Fatalf("%v: %v\n%s", args, err, ee.Stderr)
			}
			t.Fatalf("%v: %v", args, err)
		}
		return out
	}
	skFile, pkFile := filepath.Join(dir, "sk"), filepath.Join(dir, "pk")
	nix("nix-store", "--generate-binary-cache-key", "real-nix-1", skFile, pkFile)
	skb, _ := os.ReadFile(skFile)
	pkb, _ := os.ReadFile(pkFile)
	sk, err := ParseSecretKey(string(skb))
	if err != nil {
		t.Fatal(err)
	}
	pk, err := ParsePublicKey(string(pkb))
	if err != nil {
		t.Fatal(err)
	}
	if sk.Public().String() != pk.String() {
		t.Fatalf("public key %s does not match secret's %s", pk, sk.Public())
	}
	if sk.String() != string(skb) || pk.String() != string(pkb) {
		t.Errorf("key files do not print back: %q %q", sk, pk)
	}

	store := "local?root=" + filepath.Join(dir, "root")
	src := filepath.Join(dir, "hello.txt")
	if err := os.WriteFile(src, []byte("hello from drvmesh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := strings.TrimSpace(string(nix("nix-store", "--store", store, "--add", src)))
	nix("nix", "store", "sign", "--store", store, "--key-file", skFile, path)
	var infos []struct {
		Path       string   `json:"path"`
		NarHash    string   `json:"narHash"`
		NarSize    int64    `json:"narSize"`
		References []string `json:"references"`
		Signatures []string `json:"signatures"`
	}
	if err := json.Unmarshal(nix("nix", "path-info", "--store", store, "--json", "--sigs", path), &infos); err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 || len(infos[0].Signatures) != 1 {
		t.Fatalf("path-info: %+v", infos)
	}
	h, err := ParseHash(infos[0].NarHash)
	if err != nil {
		t.Fatal(err)
	}
	ni := &NarInfo{StorePath: infos[0].Path, NarHash: h, NarSize: infos[0].NarSize}
	for _, r := range infos[0].References {
		ni.References = append(ni.References, filepath.Base(r))
	}
	sk.SignNarInfo(ni, "/nix/store")
	if len(ni.Sigs) != 1 || ni.Sigs[0] != infos[0].Signatures[0] {
		t.Fatalf("our Sig %v, nix store sign gave %s", ni.Sigs, infos[0].Signatures[0])
	}
	if !pk.VerifyNarInfo(ni, "/nix/store") {
		t.Fatal("Nix's signature does not verify with the Nix public key")
	}

	// Nix trusts a file cache narinfo we signed. The path is content
	// addressed, so drop its CA line to make Nix require a signature.
	cache := filepath.Join(dir, "cache")
	nix("nix", "copy", "--store", store, "--to", "file://"+cache+"?compression=none", path)
	niFile := filepath.Join(cache, HashPart(path)+".narinfo")
	raw, err := os.ReadFile(niFile)
	if err != nil {
		t.Fatal(err)
	}
	cached, err := ParseNarInfo(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cached.Bytes(), raw) {
		t.Fatalf("nix copy's narinfo does not print back:\n%s", raw)
	}
	cached.CA = ""
	verify := func(signer SecretKey, xdg string) error {
		signed := *cached
		signed.Sigs = nil
		signer.SignNarInfo(&signed, "/nix/store")
		if err := os.WriteFile(niFile, signed.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("nix", "store", "verify", "--store", "file://"+cache,
			"--sigs-needed", "1", "--trusted-public-keys", pk.String(), path)
		cmd.Env = append(env, "XDG_CACHE_HOME="+filepath.Join(dir, xdg))
		return cmd.Run()
	}
	other, _ := GenerateKey("real-nix-1")
	if err := verify(other, "c1"); err == nil {
		t.Fatal("nix store verify accepts a signature by another key")
	}
	if err := verify(sk, "c2"); err != nil {
		t.Fatalf("nix store verify rejects our signature: %v", err)
	}
}
