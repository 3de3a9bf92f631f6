package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	niNixTestdata  = "../../testdata/nix-2.8"
	niGuixTestdata = "../../testdata/guix"
)

func TestNarinfoVerify_ExitCodes(t *testing.T) {
	type tc struct {
		file, key string
		code      int
		say       string
	}
	var cases []tc
	nixFiles, _ := filepath.Glob(filepath.Join(niNixTestdata, "cache-*", "*.narinfo"))
	if len(nixFiles) == 0 {
		t.Fatal("no nix narinfos")
	}
	nixPub, _ := os.ReadFile(filepath.Join(niNixTestdata, "signing.pub"))
	for _, f := range nixFiles {
		cases = append(cases,
			tc{f, filepath.Join(niNixTestdata, "signing.pub"), 0, "valid-signature"},
			tc{f, string(nixPub), 0, "valid-signature"},
			tc{f, "test-1:/YyuNqLhOlz2nURbiO49J6yIPdsVKM1hhuR83o4fnu8=", 1, "no Sig by key test-1"},
			tc{f, "vectors-key-1:/YyuNqLhOlz2nURbiO49J6yIPdsVKM1hhuR83o4fnu8=", 1, "invalid-signature"},
			tc{f, filepath.Join(niGuixTestdata, "acl"), 1, "unsigned"},
		)
	}
	// Guix's own verdicts, for both the acl and the bare public key.
	verdicts, err := os.ReadFile(filepath.Join(niGuixTestdata, "details", "guix-verdicts.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(verdicts)), "\n") {
		f := strings.Fields(l)
		file, acl := filepath.Join(niGuixTestdata, f[0]), filepath.Join(niGuixTestdata, strings.TrimSuffix(f[2], "]"))
		status := strings.TrimPrefix(f[4], "status=")
		code := 1
		if f[3] == "valid-narinfo?=#t" {
			code = 0
		}
		cases = append(cases, tc{file, acl, code, status})
		if f[2] == "acl]" {
			cases = append(cases, tc{file, filepath.Join(niGuixTestdata, "signing-key.pub"), code, status})
		}
	}
	cases = append(cases,
		tc{filepath.Join(niGuixTestdata, "narinfo", "01-hello-zstd-lzip.narinfo"), filepath.Join(niNixTestdata, "signing.pub"), 1, "no Sig by key vectors-key-1"},
		tc{filepath.Join(niGuixTestdata, "acl"), filepath.Join(niGuixTestdata, "acl"), 2, "bad narinfo"},
		tc{filepath.Join(niGuixTestdata, "narinfo", "01-hello-zstd-lzip.narinfo"), filepath.Join(niGuixTestdata, "signing-key.sec"), 2, "bad key"},
		tc{filepath.Join(niGuixTestdata, "narinfo", "01-hello-zstd-lzip.narinfo"), "nokey", 2, "no such file"},
		tc{filepath.Join(niGuixTestdata, "no-such.narinfo"), filepath.Join(niGuixTestdata, "acl"), 2, "no such file"},
	)
	for _, c := range cases {
		rel := strings.TrimPrefix(c.file, "../../testdata/")
		t.Run(rel+" "+filepath.Base(c.key), func(t *testing.T) {
			if got := run([]string{"narinfo", "verify", c.file, "--key", c.key}); got != c.code {
				t.Fatalf("exit %d, want %d", got, c.code)
			}
			var out bytes.Buffer
			err := narinfoVerify(&out, []string{c.file, "--key", c.key})
			msg := out.String()
			if err != nil {
				msg = err.Error()
			}
			if !strings.Contains(msg, c.say) {
				t.Errorf("message %q does not say %q", msg, c.say)
			}
		})
	}
	t.Run("usage", func(t *testing.T) {
		if got := run([]string{"narinfo", "verify", nixFiles[0]}); got != 2 {
			t.Errorf("no --key: exit %d", got)
		}
	})
}
