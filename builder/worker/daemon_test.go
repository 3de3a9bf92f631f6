package worker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drvmesh/drvmesh/internal/testutil"
	"github.com/drvmesh/drvmesh/store"
)

// startDaemon starts nix-daemon --stdio on a fresh chroot store and
// returns the handshaken connection and the store's root.
func startDaemon(t *testing.T) (*Conn, string) {
	t.Helper()
	testutil.RequireTool(t, "nix-daemon")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	return dialRoot(t, dir, root), root
}

func dialRoot(t *testing.T, dir, root string) *Conn {
	t.Helper()
	cmd := exec.Command("nix-daemon", "--stdio", "--store", "local?root="+root)
	cmd.Env = testutil.NixEnv(dir, "")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	rwc, err := StartStdio(cmd)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := NewConn(ctx, rwc)
	if err != nil {
		t.Fatalf("handshake: %v\n%s", err, stderr.String())
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.SetOptions(ctx, Options{UseSubstitutes: false}); err != nil {
		t.Fatalf("set options: %v", err)
	}
	return c
}

// fakePath makes a store path name for a test.
func fakePath(name string) string {
	h := sha256.Sum256([]byte(name))
	return "/nix/store/" + store.EncodeNix32(h[:20]) + "-" + name
}

// narOf dumps a file with the given contents into a NAR.
func narOf(t *testing.T, contents string) ([]byte, store.Hash) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(contents), 0o444); err != nil {
		t.Fatal(err)
	}
	var nar bytes.Buffer
	if err := store.DumpPath(&nar, p); err != nil {
		t.Fatal(err)
	}
	return nar.Bytes(), store.SHA256Hash(sha256.Sum256(nar.Bytes()))
}

func TestConn_Daemon(t *testing.T) {
	c, root := startDaemon(t)
	ctx := context.Background()

	t.Run("handshake", func(t *testing.T) {
		if c.Version() != 0x122 || c.DaemonVersion() < 0x122 {
			t.Errorf("version %#x, daemon %#x", c.Version(), c.DaemonVersion())
		}
		if !strings.HasPrefix(c.NixVersion(), "2.") {
			t.Errorf("nix version %q", c.NixVersion())
		}
	})

	src := fakePath("src")
	nar, hash := narOf(t, "hello\n")
	info := PathInfo{Path: src, NarHash: hash, NarSize: uint64(len(nar)), Sigs: []string{}, References: []string{}}

	t.Run("add to store nar", func(t *testing.T) {
		valid, err := c.IsValidPath(ctx, src)
		if err != nil || valid {
			t.Fatalf("before: valid %v, %v", valid, err)
		}
		if err := c.AddToStoreNar(ctx, info, bytes.NewReader(nar), false, true); err != nil {
			t.Fatal(err)
		}
		valid, err = c.IsValidPath(ctx, src)
		if err != nil || !valid {
			t.Fatalf("after: valid %v, %v", valid, err)
		}
		got, ok, err := c.QueryPathInfo(ctx, src)
		if err != nil || !ok {
			t.Fatalf("query path info: %v %v", ok, err)
		}
		if !got.NarHash.Equal(hash) || got.NarSize != uint64(len(nar)) || len(got.References) != 0 {
			t.Errorf("info = %+v", got)
		}
		b, err := os.ReadFile(filepath.Join(root, src))
		if err != nil || string(b) != "hello\n" {
			t.Errorf("file %q, %v", b, err)
		}
	})

	t.Run("wrong nar hash is a daemon error", func(t *testing.T) {
		bad := info
		bad.Path = fakePath("bad")
		bad.NarHash = store.SHA256Hash(sha256.Sum256([]byte("other")))
		err := c.AddToStoreNar(ctx, bad, bytes.NewReader(nar), false, true)
		var de *DaemonError
		if !errors.As(err, &de) || !strings.Contains(de.Message, "hash mismatch") {
			t.Fatalf("err = %v, want a hash mismatch", err)
		}
		if c.Broken() {
			t.Fatal("a daemon error broke the connection")
		}
	})

	t.Run("query valid paths", func(t *testing.T) {
		got, err := c.QueryValidPaths(ctx, []string{src, fakePath("absent")}, false)
		if err != nil || !slices.Equal(got, []string{src}) {
			t.Fatalf("valid = %v, %v", got, err)
		}
		if _, ok, err := c.QueryPathInfo(ctx, fakePath("absent")); ok || err != nil {
			t.Fatalf("absent: ok %v, %v", ok, err)
		}
	})

	t.Run("nar from path", func(t *testing.T) {
		var got bytes.Buffer
		if err := c.NarFromPath(ctx, src, &got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), nar) {
			t.Errorf("nar differs: %d bytes, want %d", got.Len(), len(nar))
		}
	})

	out := fakePath("out")
	drv := BasicDerivation{
		Outputs:   []store.Output{{Name: "out", Path: out}},
		InputSrcs: []string{src},
		Platform:  "x86_64-linux",
		Builder:   "/bin/sh",
		Args:      []string{"-c", "echo line-one; read x < " + src + "; echo \"$x built\" > $out"},
		Env:       []store.EnvVar{{Key: "out", Value: out}},
	}
	t.Run("build derivation", func(t *testing.T) {
		var log bytes.Buffer
		res, err := c.BuildDerivation(ctx, fakePath("out.drv"), drv, BuildNormal, &log)
		if err != nil {
			t.Fatalf("build: %v\n%s", err, log.String())
		}
		if res.Status != Built {
			t.Fatalf("status %v: %s\n%s", res.Status, res.ErrorMsg, log.String())
		}
		if !strings.Contains(log.String(), "line-one\n") {
			t.Errorf("log lacks the builder's line:\n%s", log.String())
		}
		b, err := os.ReadFile(filepath.Join(root, out))
		if err != nil || string(b) != "hello built\n" {
			t.Errorf("output %q, %v", b, err)
		}
		res, err = c.BuildDerivation(ctx, fakePath("out.drv"), drv, BuildNormal, nil)
		if err != nil || res.Status != AlreadyValid {
			t.Errorf("again: %v %v", res.Status, err)
		}
	})

	t.Run("failing build", func(t *testing.T) {
		fail := drv
		fail.Outputs = []store.Output{{Name: "out", Path: fakePath("fail")}}
		fail.Env = []store.EnvVar{{Key: "out", Value: fakePath("fail")}}
		fail.Args = []string{"-c", "echo boom; exit 3"}
		var log bytes.Buffer
		res, err := c.BuildDerivation(ctx, fakePath("fail.drv"), fail, BuildNormal, &log)
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != PermanentFailure || !strings.Contains(log.String(), "boom") {
			t.Errorf("status %v %q\n%s", res.Status, res.ErrorMsg, log.String())
		}
	})
}

// TestConn_UnixSocket talks to a daemon listening on its socket, as the
// system daemon does, serving a chroot store.
func TestConn_UnixSocket(t *testing.T) {
	testutil.RequireTool(t, "nix-daemon")
	dir := t.TempDir()
	cmd := exec.Command("nix-daemon", "--store", "local?root="+filepath.Join(dir, "root"))
	cmd.Env = testutil.NixEnv(dir, "")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		_ = cmd.Wait()
	})
	socket := filepath.Join(dir, "state", "daemon-socket", "socket")
	testutil.Eventually(t, 10*time.Second, "daemon socket exists", func() bool {
		_, err := os.Stat(socket)
		return err == nil
	})
	ctx := context.Background()
	rwc, err := DialUnix(ctx, socket)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewConn(ctx, rwc)
	if err != nil {
		t.Fatalf("handshake: %v\n%s", err, stderr.String())
	}
	defer c.Close()
	if c.Version() != ProtocolVersion {
		t.Errorf("version %#x", c.Version())
	}
	p := fakePath("over-socket")
	nar, hash := narOf(t, "socket\n")
	// Root is a trusted user of the daemon, so an unsigned path is accepted.
	info := PathInfo{Path: p, NarHash: hash, NarSize: uint64(len(nar))}
	if err := c.AddToStoreNar(ctx, info, bytes.NewReader(nar), false, true); err != nil {
		t.Fatal(err)
	}
	if valid, err := c.IsValidPath(ctx, p); err != nil || !valid {
		t.Fatalf("valid %v, %v", valid, err)
	}
}
