package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/drvmesh/drvmesh/store"
)

func init() {
	register("nar dump", "PATH: write the NAR of PATH to stdout (as nix-store --dump)",
		func(args []string) error { return narDump(os.Stdout, args) })
	register("nar restore", "DIR: unpack a NAR from stdin into DIR, which must not exist",
		func(args []string) error { return narRestore(os.Stdin, args) })
	register("nar hash", "PATH|-: print the NAR hash of PATH, or of the NAR on stdin, in nix32 (as nix-hash --type sha256 --base32)",
		func(args []string) error { return narHash(os.Stdout, os.Stdin, args) })
	register("nar ls", "FILE [--json]: list the NAR in FILE (- for stdin) as nix nar ls -lR, or as the .ls JSON",
		func(args []string) error { return narLs(os.Stdout, os.Stdin, args) })
}

// narFileErr maps a filesystem error: a missing path is bad input.
func narFileErr(err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrExist):
		return usageErr("%v", err)
	case errors.Is(err, store.ErrBadNar):
		return err
	default:
		return fmt.Errorf("%w: %w", errFailed, err)
	}
}

func narOnePath(name string, args []string) (string, error) {
	pos, err := parseFlags(newFlags(name), args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", usageErr("usage: drvmesh %s", commands[name].usage)
	}
	return pos[0], nil
}

func narDump(stdout io.Writer, args []string) error {
	path, err := narOnePath("nar dump", args)
	if err != nil {
		return err
	}
	if err := store.DumpPath(stdout, path); err != nil {
		return narFileErr(err)
	}
	return nil
}

func narRestore(stdin io.Reader, args []string) error {
	dir, err := narOnePath("nar restore", args)
	if err != nil {
		return err
	}
	if err := store.Restore(stdin, dir); err != nil {
		return narFileErr(err)
	}
	return nil
}

func narHash(stdout io.Writer, stdin io.Reader, args []string) error {
	path, err := narOnePath("nar hash", args)
	if err != nil {
		return err
	}
	var h store.Hash
	if path == "-" {
		h, _, err = store.CheckNar(stdin)
	} else {
		h, _, err = store.NarHashPath(path)
	}
	if err != nil {
		return narFileErr(err)
	}
	_, err = fmt.Fprintln(stdout, h.Nix32())
	return err
}

func narLs(stdout io.Writer, stdin io.Reader, args []string) error {
	fl := newFlags("nar ls")
	asJSON := fl.Bool("json", false, "print the .ls JSON listing")
	pos, err := parseFlags(fl, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("usage: drvmesh nar ls FILE [--json]")
	}
	in := stdin
	if pos[0] != "-" {
		f, err := os.Open(pos[0])
		if err != nil {
			return narFileErr(err)
		}
		defer f.Close()
		in = f
	}
	if *asJSON {
		l, err := store.ListNar(in)
		if err != nil {
			return err
		}
		b, err := l.Root.MarshalJSON()
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "{\"version\":%d,\"root\":%s}\n", l.Version, b)
		return err
	}
	w := bufio.NewWriter(stdout)
	r := store.NewNarReader(in)
	for {
		h, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if h.Path == "" && h.Type == store.NarDirectory {
			continue // nix nar ls -R lists a directory's contents
		}
		name := h.Path
		if name != "" {
			name = "./" + name
		}
		switch h.Type {
		case store.NarRegular:
			mode := "-r--r--r--"
			if h.Executable {
				mode = "-r-xr-xr-x"
			}
			fmt.Fprintf(w, "%s %20d %s\n", mode, h.Size, name)
		case store.NarDirectory:
			fmt.Fprintf(w, "dr-xr-xr-x %20d %s\n", 0, name)
		case store.NarSymlink:
			fmt.Fprintf(w, "lrwxrwxrwx %20d %s -> %s\n", 0, name, h.LinkTarget)
		}
	}
	return w.Flush()
}
