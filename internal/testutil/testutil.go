// Package testutil holds the helpers every drvmesh test shares: one polling
// helper (tests never sleep for a condition) and the checks for the real
// tools some tests need.
package testutil

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// Eventually polls cond every few milliseconds until it returns true or
// timeout passes, then fails the test with msg.
func Eventually(t testing.TB, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := time.Millisecond
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %v: %s", timeout, msg)
		}
		time.Sleep(wait)
		if wait < 50*time.Millisecond {
			wait *= 2
		}
	}
}

// RequireTool skips the test when a command is missing on a developer
// machine, and fails it under CI (CI=true), where .ci/run installs it.
func RequireTool(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed; .ci/run must install it", name)
			}
			t.Skipf("%s is not installed", name)
		}
	}
}

// RequireNix is RequireTool for the Nix 2.8 commands.
func RequireNix(t testing.TB) {
	t.Helper()
	RequireTool(t, "nix-store", "nix-instantiate", "nix-hash", "nix")
}

// NixEnv returns an environment for running Nix against a private chroot
// store without a daemon: sandboxing on, /bin/sh reachable, no build users,
// and its state under dir.
func NixEnv(dir string, extraConfig string) []string {
	conf := "sandbox = true\nextra-sandbox-paths = /bin /usr /lib /lib64\nbuild-users-group =\n" +
		"experimental-features = nix-command\nsubstituters =\n" + extraConfig
	return append(os.Environ(),
		"NIX_CONFIG="+conf,
		"NIX_REMOTE=",
		"HOME="+dir+"/home",
		"XDG_CACHE_HOME="+dir+"/cache",
		"NIX_STATE_DIR="+dir+"/state",
		"NIX_LOG_DIR="+dir+"/log",
	)
}
