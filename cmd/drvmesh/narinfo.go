package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/drvmesh/drvmesh/store"
)

func init() {
	register("narinfo verify", "FILE --key K [--store-dir DIR]: check FILE's signature by K (a Nix public key name:base64 or a file holding one, a Guix signing-key.pub, or a Guix acl); exit 0 valid, 1 not, 2 malformed",
		func(args []string) error { return narinfoVerify(os.Stdout, args) })
}

// verifyKey is what --key names: a Nix key or a Guix ACL (a single Guix
// key becomes an ACL of one).
type verifyKey struct {
	nix  *store.PublicKey
	guix *store.GuixACL
	desc string
}

// loadVerifyKey reads K from a file if one exists at that path, else takes
// K itself as a Nix key line.
func loadVerifyKey(k string) (verifyKey, error) {
	text, err := os.ReadFile(k)
	desc := k
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist):
		pk, perr := store.ParsePublicKey(k)
		if perr != nil {
			return verifyKey{}, usageErr("--key %s: no such file, and not a name:base64 key", k)
		}
		return verifyKey{nix: &pk, desc: "Nix key " + pk.Name}, nil
	default:
		return verifyKey{}, fmt.Errorf("%w: read key: %w", errFailed, err)
	}
	if t := bytes.TrimSpace(text); len(t) > 0 && t[0] == '(' {
		if acl, err := store.ParseGuixACL(text); err == nil {
			return verifyKey{guix: &acl, desc: "Guix acl " + desc}, nil
		}
		pk, err := store.ParseGuixPublicKey(text)
		if err != nil {
			return verifyKey{}, fmt.Errorf("--key %s: %w", k, err)
		}
		acl := store.NewGuixACL(pk)
		return verifyKey{guix: &acl, desc: "Guix key " + desc}, nil
	}
	pk, err := store.ParsePublicKey(string(text))
	if err != nil {
		return verifyKey{}, fmt.Errorf("--key %s: %w", k, err)
	}
	return verifyKey{nix: &pk, desc: "Nix key " + pk.Name}, nil
}

func narinfoVerify(stdout io.Writer, args []string) error {
	fset := newFlags("narinfo verify")
	key := fset.String("key", "", "public key, key file or Guix acl")
	storeDir := fset.String("store-dir", "", "store dir of the references (default: that of StorePath)")
	pos, err := parseFlags(fset, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *key == "" {
		return usageErr("usage: drvmesh narinfo verify %s", commands["narinfo verify"].usage)
	}
	raw, err := os.ReadFile(pos[0])
	if errors.Is(err, fs.ErrNotExist) {
		return usageErr("%v", err)
	} else if err != nil {
		return fmt.Errorf("%w: %w", errFailed, err)
	}
	ni, err := store.ParseNarInfo(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	k, err := loadVerifyKey(*key)
	if err != nil {
		return err
	}
	if k.guix != nil {
		if err := store.VerifyGuixNarInfo(raw, *k.guix); err != nil {
			if errors.Is(err, store.ErrBadNarInfo) {
				return fmt.Errorf("%s: %w", pos[0], err)
			}
			return fmt.Errorf("%w: %s: Guix signature: %s", errFailed, pos[0],
				strings.TrimPrefix(err.Error(), store.ErrBadSignature.Error()+": "))
		}
		fmt.Fprintf(stdout, "%s: valid-signature: Guix Signature verifies with %s\n", pos[0], k.desc)
		return nil
	}
	dir := *storeDir
	if dir == "" {
		dir = ni.StoreDir()
	}
	var byName int
	for _, s := range ni.Sigs {
		if name, _, _ := strings.Cut(s, ":"); name == k.nix.Name {
			byName++
		}
	}
	if byName == 0 {
		return fmt.Errorf("%w: %s: no Sig by key %s", errFailed, pos[0], k.nix.Name)
	}
	if !k.nix.VerifyNarInfo(ni, dir) {
		return fmt.Errorf("%w: %s: invalid-signature: Sig by key %s does not verify over %q", errFailed, pos[0], k.nix.Name, ni.Fingerprint(dir))
	}
	fmt.Fprintf(stdout, "%s: valid-signature: Sig by %s verifies over %q\n", pos[0], k.desc, ni.Fingerprint(dir))
	return nil
}
