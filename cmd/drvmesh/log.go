package main

import (
	"context"
	"net/url"
	"os"

	"github.com/drvmesh/drvmesh/api"
)

func init() {
	register("log", "the build log (while running too)", runLog)
	register("key", "the public key for trusted-public-keys (--guix: the Guix key)", runKey)
}

func runLog(args []string) error {
	fs := newFlags("log")
	follow := fs.Bool("follow", true, "keep streaming while the build runs")
	mk := clientFlags(fs)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("log takes one build id")
	}
	q := url.Values{}
	if *follow {
		q.Set("follow", "1")
	}
	return mk().get(context.Background(), "/api/v1/builds/"+url.PathEscape(pos[0])+"/log", q, os.Stdout)
}

func runKey(args []string) error {
	fs := newFlags("key")
	guix := fs.Bool("guix", false, "print the Guix public key (for guix archive --authorize)")
	mk := clientFlags(fs)
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) != 0 {
		return usageErr("key takes no arguments")
	}
	var k api.Key
	if err := mk().get(context.Background(), "/api/v1/key", nil, &k); err != nil {
		return err
	}
	if *guix {
		if k.Guix == "" {
			return usageErr("this mesh has no Guix key (start its first node with --guix-key)")
		}
		_, err := os.Stdout.WriteString(k.Guix)
		return err
	}
	_, err := os.Stdout.WriteString(k.Nix + "\n")
	return err
}
