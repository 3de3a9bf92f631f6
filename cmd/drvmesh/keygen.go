package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/drvmesh/drvmesh/store"
)

func init() {
	register("keygen", "NAME [--out DIR] | --guix [--out DIR]: write a Nix key pair DIR/NAME.sec (0600) and DIR/NAME.pub, or with --guix a Guix pair signing-key.sec (0400) and signing-key.pub (0444); never overwrites",
		func(args []string) error { return keygen(os.Stdout, args) })
}

func keygen(stdout io.Writer, args []string) error {
	fset := newFlags("keygen")
	out := fset.String("out", ".", "directory for the key files")
	guix := fset.Bool("guix", false, "make a Guix key pair")
	pos, err := parseFlags(fset, args)
	if err != nil {
		return err
	}
	if *guix && len(pos) != 0 || !*guix && len(pos) != 1 {
		return usageErr("usage: drvmesh keygen %s", commands["keygen"].usage)
	}
	if *guix {
		sk, err := store.GenerateGuixKey()
		if err != nil {
			return fmt.Errorf("%w: %w", errFailed, err)
		}
		sec, pub := filepath.Join(*out, "signing-key.sec"), filepath.Join(*out, "signing-key.pub")
		if err := writeKeyFiles(sec, sk.SecretKeyText(), 0o400, pub, sk.PublicKeyText(), 0o444); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s and %s\n", sec, pub)
		return nil
	}
	sk, err := store.GenerateKey(pos[0])
	if err != nil {
		return err
	}
	sec, pub := filepath.Join(*out, pos[0]+".sec"), filepath.Join(*out, pos[0]+".pub")
	// As nix-store --generate-binary-cache-key: no trailing newlines.
	if err := writeKeyFiles(sec, []byte(sk.String()), 0o600, pub, []byte(sk.Public().String()), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s and %s\n%s\n", sec, pub, sk.Public())
	return nil
}

// writeKeyFiles creates both files, refusing to replace existing ones, and
// removes what it wrote if the second fails.
func writeKeyFiles(sec string, secData []byte, secMode os.FileMode, pub string, pubData []byte, pubMode os.FileMode) error {
	for _, p := range []string{sec, pub} {
		if _, err := os.Lstat(p); err == nil {
			return usageErr("%s exists; not overwriting", p)
		}
	}
	if err := writeNewFile(sec, secData, secMode); err != nil {
		return err
	}
	if err := writeNewFile(pub, pubData, pubMode); err != nil {
		os.Remove(sec)
		return err
	}
	return nil
}

func writeNewFile(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		if errors.Is(err, fs.ErrExist) || errors.Is(err, fs.ErrNotExist) {
			return usageErr("%v", err)
		}
		return fmt.Errorf("%w: %w", errFailed, err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("%w: write %s: %w", errFailed, path, err)
	}
	return nil
}
