package main

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestTokenFrom(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tok")
	if err := os.WriteFile(file, []byte("dma1.fromfile\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	envFile := filepath.Join(dir, "envtok")
	if err := os.WriteFile(envFile, []byte("dma1.fromenvfile\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, flag, file, env, envFile string
		want                           string
		usage                          bool
	}{
		{name: "nothing"},
		{name: "flag wins", flag: "dma1.flag", file: file, env: "dma1.env", want: "dma1.flag"},
		{name: "file before env", file: file, env: "dma1.env", want: "dma1.fromfile"},
		{name: "env", env: " dma1.env ", want: "dma1.env"},
		{name: "env file", envFile: envFile, want: "dma1.fromenvfile"},
		{name: "env before env file", env: "dma1.env", envFile: envFile, want: "dma1.env"},
		{name: "missing file", file: filepath.Join(dir, "nope"), usage: true},
		{name: "empty file", file: empty, usage: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("DRVMESH_TEST_TOKEN", tc.env)
			t.Setenv("DRVMESH_TEST_TOKEN_FILE", tc.envFile)
			got, err := tokenFrom(tc.flag, tc.file, "DRVMESH_TEST_TOKEN")
			if tc.usage {
				if !errors.Is(err, errUsage) {
					t.Fatalf("got %q, %v; want a usage error", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
