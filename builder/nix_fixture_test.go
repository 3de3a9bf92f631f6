package builder

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/drvmesh/drvmesh/internal/testutil"
)

// graphNix is the test derivation graph. Every builder is /bin/sh from
// the host (reachable through extra-sandbox-paths). @NONCE@ makes the
// sleeping derivation, whose processes the cancel test looks for, unique.
const graphNix = `
let
  mk = name: script: attrs: derivation ({
    inherit name;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" ("PATH=/usr/bin:/bin; " + script) ];
  } // attrs);
  msg = builtins.toFile "msg" "from-src";
  dep = mk "dep" "echo dep-content > $out" {};
  top = mk "top" "echo started; read x < ${dep}; read y < ${msg}; echo \"top $x $y\" > $out" {};
  lost = mk "lost" "echo lost-content > $out" {};
  orphan = mk "orphan" "read x < ${lost}; echo $x > $out" {};
  gone = mk "gone" "echo gone > $out" {};
  stray = mk "stray" "read x < ${gone}; echo $x > $out" {};
  multi = mk "multi" "echo o > $out; mkdir $dev; echo d > $dev/f" { outputs = [ "out" "dev" ]; };
  fixed = mk "fixed" "printf hello > $out" {
    outputHashMode = "flat"; outputHashAlgo = "sha256";
    outputHash = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
  };
  fail = mk "fail" "echo boom; exit 1" {};
  sleepy = mk "sleepy" "echo started; sleep @NONCE@; echo > $out" {};
in { inherit dep top lost orphan gone stray multi fixed fail sleepy; }
`

// fixture is a source store A, a signed binary cache made from it and
// served over HTTP (standing in for the node's cache), and a fresh chroot
// store B to build into.
type fixture struct {
	dir     string
	storeA  string
	storeB  string
	cache   string
	url     string
	pubKey  string
	nonce   string
	drvs    map[string]string // attribute → .drv path
	envA    []string
	builder *Nix
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	testutil.RequireNix(t)
	dir := t.TempDir()
	f := &fixture{
		dir:    dir,
		storeA: filepath.Join(dir, "a"),
		storeB: filepath.Join(dir, "b"),
		cache:  filepath.Join(dir, "cache"),
		nonce:  fmt.Sprintf("30.%d", os.Getpid()%1000+1000),
		drvs:   map[string]string{},
		envA:   testutil.NixEnv(filepath.Join(dir, "envA"), ""),
	}
	expr := filepath.Join(dir, "graph.nix")
	if err := os.WriteFile(expr, []byte(strings.ReplaceAll(graphNix, "@NONCE@", f.nonce)), 0o644); err != nil {
		t.Fatal(err)
	}
	attrs := []string{"dep", "top", "lost", "orphan", "gone", "stray", "multi", "fixed", "fail", "sleepy"}
	args := []string{"--store", f.localA(), expr}
	for _, a := range attrs {
		args = append(args, "-A", a)
	}
	out := f.run(t, "nix-instantiate", args...)
	paths := strings.Fields(out)
	if len(paths) != len(attrs) {
		t.Fatalf("nix-instantiate printed %q", out)
	}
	for i, a := range attrs {
		f.drvs[a] = paths[i]
	}
	sk := filepath.Join(dir, "sk")
	pk := filepath.Join(dir, "pk")
	f.run(t, "nix-store", "--generate-binary-cache-key", "drvmesh-test", sk, pk)
	b, err := os.ReadFile(pk)
	if err != nil {
		t.Fatal(err)
	}
	f.pubKey = strings.TrimSpace(string(b))
	to := "file://" + f.cache + "?compression=none&secret-key=" + sk
	// Every .drv closure but gone.drv's (so stray.drv cannot be fetched).
	f.run(t, "nix", "copy", "--derivation", "--store", f.localA(), "--to", to,
		f.drvs["top"], f.drvs["orphan"], f.drvs["stray"], f.drvs["multi"], f.drvs["fixed"], f.drvs["fail"], f.drvs["sleepy"])
	if err := os.Remove(filepath.Join(f.cache, hashPart(f.drvs["gone"])+".narinfo")); err != nil {
		t.Fatal(err)
	}
	// dep's output is in the cache; lost's is not.
	f.run(t, "nix-store", "--store", f.localA(), "--realise", f.drvs["dep"])
	depOut := strings.TrimSpace(f.run(t, "nix-store", "--store", f.localA(), "--query", "--outputs", f.drvs["dep"]))
	f.run(t, "nix", "copy", "--store", f.localA(), "--to", to, depOut)

	srv := httptest.NewServer(http.FileServer(http.Dir(f.cache)))
	t.Cleanup(srv.Close)
	f.url = srv.URL
	nb, err := NewNix(NixConfig{Store: "local?root=" + f.storeB, StateDir: filepath.Join(dir, "state")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := nb.Close(); err != nil {
			t.Error(err)
		}
	})
	f.builder = nb
	return f
}

func (f *fixture) localA() string { return "local?root=" + f.storeA }

func (f *fixture) run(t testing.TB, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = f.envA
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, stderr.String())
	}
	return string(out)
}

func (f *fixture) request(attr string, outputs ...string) Request {
	return Request{
		DrvPath:     f.drvs[attr],
		Outputs:     outputs,
		Substituter: f.url,
		TrustedKeys: []string{f.pubKey},
	}
}

func hashPart(p string) string {
	base := filepath.Base(p)
	h, _, _ := strings.Cut(base, "-")
	return h
}

// syncBuffer is a log writer the test reads while a build writes it.
type syncBuffer struct {
	mu  chan struct{}
	buf bytes.Buffer
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{mu: make(chan struct{}, 1)} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu <- struct{}{}
	defer func() { <-b.mu }()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu <- struct{}{}
	defer func() { <-b.mu }()
	return b.buf.String()
}
