package builder

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// These tests run a fake guix script: they check the command line we
// build and how we read its output, not Guix itself (not installed here).

const (
	fakeDrv = "/gnu/store/0123456789abcdfghijklmnpqrsvwxyz-hello.drv"
	fakeOut = "/gnu/store/zyxwvsrqpnmlkjihgfdcba9876543210-hello"
	fakeDev = "/gnu/store/abcdfghijklmnpqrsvwxyz0123456789-hello-dev"
	fakeIn  = "/gnu/store/9876543210abcdfghijklmnpqrsvwxyz-input"
)

const fakeDrvText = `Derive([("dev","` + fakeDev + `","",""),("out","` + fakeOut + `","","")],[],[],"x86_64-linux","/bin/sh",["-c","true"],[("dev","` + fakeDev + `"),("out","` + fakeOut + `")])`

// fakeGuix records its argv in $FAKE_GUIX_ARGV and behaves per
// $FAKE_GUIX_MODE, writing outputs under $FAKE_GUIX_ROOT.
const fakeGuix = `#!/bin/sh
BQ=$(printf '\140')
printf '%s\n' "$@" > "$FAKE_GUIX_ARGV"
case "$FAKE_GUIX_MODE" in
ok)
  echo "building ` + fakeDrv + `..." >&2
  echo "hello from the builder" >&2
  echo out-content > "$FAKE_GUIX_ROOT` + fakeOut + `"
  mkdir -p "$FAKE_GUIX_ROOT` + fakeDev + `"
  echo ` + fakeDev + `
  echo ` + fakeOut + `
  ;;
substituted)
  echo "substituting ` + fakeOut + `..." >&2
  echo ` + fakeDev + `
  echo ` + fakeOut + `
  ;;
fail)
  echo "building ` + fakeDrv + `..." >&2
  echo boom >&2
  echo "builder for ` + "${BQ}" + fakeDrv + `' failed with exit code 1" >&2
  echo "guix build: error: build of ` + "${BQ}" + fakeDrv + `' failed" >&2
  exit 1
  ;;
missing)
  echo "path ` + "${BQ}" + fakeIn + `' is required, but there is no substituter that can build it" >&2
  echo "guix build: error: some substitutes for the outputs of derivation ` + "${BQ}" + fakeDrv + `' failed" >&2
  exit 1
  ;;
*)
  echo "guix build: error: failed to connect to daemon" >&2
  exit 1
  ;;
esac
`

func newFakeGuix(t *testing.T) (*Guix, string, string) {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(filepath.Join(root, "gnu/store"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, fakeDrv), []byte(fakeDrvText), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "guix"), []byte(fakeGuix), 0o755); err != nil {
		t.Fatal(err)
	}
	argv := filepath.Join(dir, "argv")
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	t.Setenv("FAKE_GUIX_ARGV", argv)
	t.Setenv("FAKE_GUIX_ROOT", root)
	g, err := NewGuix(GuixConfig{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	return g, root, argv
}

func TestGuix_Build(t *testing.T) {
	g, root, argv := newFakeGuix(t)
	ctx := context.Background()
	req := Request{
		DrvPath:     fakeDrv,
		Outputs:     []string{"out"},
		Substituter: "http://127.0.0.1:7700",
		MaxSilent:   90 * time.Second,
		Timeout:     1500 * time.Millisecond,
	}

	t.Run("argv and outputs", func(t *testing.T) {
		t.Setenv("FAKE_GUIX_MODE", "ok")
		var log bytes.Buffer
		res, err := g.Build(ctx, req, &log)
		if err != nil {
			t.Fatalf("build: %v\n%s", err, log.String())
		}
		b, err := os.ReadFile(argv)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"build", "--no-offload", "--substitute-urls=http://127.0.0.1:7700",
			"--max-silent-time=90", "--timeout=2", fakeDrv}
		if got := strings.Fields(string(b)); !slices.Equal(got, want) {
			t.Errorf("argv = %q, want %q", got, want)
		}
		if len(res.Outputs) != 1 || res.Outputs["out"] != fakeOut || res.Substituted {
			t.Errorf("result = %+v", res)
		}
		if !strings.Contains(log.String(), "hello from the builder") {
			t.Errorf("log = %q", log.String())
		}
		var nar bytes.Buffer
		if err := g.OutputNAR(ctx, fakeOut, &nar); err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(nar.Bytes(), []byte("out-content\n")) {
			t.Errorf("nar lacks the output's bytes")
		}
	})

	t.Run("all outputs and substituted", func(t *testing.T) {
		t.Setenv("FAKE_GUIX_MODE", "substituted")
		res, err := g.Build(ctx, Request{DrvPath: fakeDrv}, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"out": fakeOut, "dev": fakeDev}
		if len(res.Outputs) != 2 || res.Outputs["out"] != want["out"] || res.Outputs["dev"] != want["dev"] || !res.Substituted {
			t.Errorf("result = %+v", res)
		}
		b, err := os.ReadFile(argv)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Fields(string(b)); !slices.Equal(got, []string{"build", "--no-offload", fakeDrv}) {
			t.Errorf("argv = %q", got)
		}
	})

	errCases := []struct {
		mode    string
		want    error
		missing []string
	}{
		{"fail", ErrBuildFailed, nil},
		{"missing", ErrMissingInputs, []string{fakeIn}},
		{"daemon-down", ErrBackend, nil},
	}
	for _, c := range errCases {
		t.Run(c.mode, func(t *testing.T) {
			t.Setenv("FAKE_GUIX_MODE", c.mode)
			res, err := g.Build(ctx, req, nil)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if !slices.Equal(res.MissingInputs, c.missing) {
				t.Errorf("missing = %v, want %v", res.MissingInputs, c.missing)
			}
		})
	}

	t.Run("outside the store", func(t *testing.T) {
		_, err := g.Build(ctx, Request{DrvPath: filepath.Join(root, fakeDrv)}, nil)
		if !errors.Is(err, ErrBadRequest) {
			t.Errorf("err = %v, want ErrBadRequest", err)
		}
	})
}

func TestNone_Build(t *testing.T) {
	b := NewNone()
	if _, err := b.Build(context.Background(), Request{DrvPath: fakeDrv}, nil); !errors.Is(err, ErrNoBuilder) {
		t.Errorf("Build err = %v, want ErrNoBuilder", err)
	}
	if err := b.OutputNAR(context.Background(), fakeOut, &bytes.Buffer{}); !errors.Is(err, ErrNoBuilder) {
		t.Errorf("OutputNAR err = %v, want ErrNoBuilder", err)
	}
	if b.Name() != "none" {
		t.Errorf("Name = %q", b.Name())
	}
}
