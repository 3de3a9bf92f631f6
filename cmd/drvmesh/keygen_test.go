package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/drvmesh/drvmesh/internal/testutil"
	"github.com/drvmesh/drvmesh/store"
)

func TestKeygen_Nix(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	if err := keygen(&out, []string{"cache.example-1", "--out", dir}); err != nil {
		t.Fatal(err)
	}
	sec, pub := filepath.Join(dir, "cache.example-1.sec"), filepath.Join(dir, "cache.example-1.pub")
	secText, _ := os.ReadFile(sec)
	pubText, _ := os.ReadFile(pub)
	sk, err := store.ParseSecretKey(string(secText))
	if err != nil {
		t.Fatal(err)
	}
	if sk.Public().String() != string(pubText) || bytes.HasSuffix(secText, []byte("\n")) || !strings.Contains(out.String(), string(pubText)) {
		t.Errorf("key files: %q %q, output %q", secText, pubText, out.String())
	}
	if fi, _ := os.Stat(sec); fi.Mode().Perm() != 0o600 {
		t.Errorf("secret key mode %v", fi.Mode())
	}
	t.Run("no overwrite", func(t *testing.T) {
		if got := run([]string{"keygen", "cache.example-1", "--out", dir}); got != 2 {
			t.Errorf("exit %d, want 2", got)
		}
		if again, _ := os.ReadFile(sec); !bytes.Equal(again, secText) {
			t.Error("secret key was replaced")
		}
	})
	t.Run("nix reads it", func(t *testing.T) {
		testutil.RequireNix(t)
		cmd := exec.Command("nix", "key", "convert-secret-to-public")
		cmd.Env = testutil.NixEnv(t.TempDir(), "")
		cmd.Stdin = bytes.NewReader(secText)
		got, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(pubText) {
			t.Errorf("nix derives %q, we wrote %q", got, pubText)
		}
	})
}

func TestKeygen_Guix(t *testing.T) {
	dir := t.TempDir()
	if got := run([]string{"keygen", "--guix", "--out", dir}); got != 0 {
		t.Fatalf("exit %d", got)
	}
	secText, _ := os.ReadFile(filepath.Join(dir, "signing-key.sec"))
	pubText, _ := os.ReadFile(filepath.Join(dir, "signing-key.pub"))
	sk, err := store.ParseGuixSecretKey(secText)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sk.SecretKeyText(), secText) || !bytes.Equal(sk.PublicKeyText(), pubText) {
		t.Error("files are not in Guix's printed form")
	}
	for name, mode := range map[string]os.FileMode{"signing-key.sec": 0o400, "signing-key.pub": 0o444} {
		if fi, _ := os.Stat(filepath.Join(dir, name)); fi.Mode().Perm() != mode {
			t.Errorf("%s mode %v, want %v", name, fi.Mode().Perm(), mode)
		}
	}
	// A narinfo signed with the new key verifies with its .pub file.
	raw, _ := os.ReadFile(filepath.Join(niNixTestdata, "cache-none", "8b3sywiv18jd58byla4npnn81kx8amvb.narinfo"))
	ni, err := store.ParseNarInfo(raw)
	if err != nil {
		t.Fatal(err)
	}
	signed := filepath.Join(dir, "x.narinfo")
	if err := os.WriteFile(signed, sk.GuixNarInfoText(ni, "h"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := run([]string{"narinfo", "verify", signed, "--key", filepath.Join(dir, "signing-key.pub")}); got != 0 {
		t.Errorf("verify with the generated key: exit %d", got)
	}
	if got := run([]string{"narinfo", "verify", signed, "--key", filepath.Join(niNixTestdata, "signing.pub")}); got != 0 {
		t.Errorf("the Nix Sig kept in the Guix layout: exit %d", got)
	}
	if got := run([]string{"keygen", "--guix", "name", "--out", dir}); got != 2 {
		t.Errorf("--guix with a name: exit %d", got)
	}
}
