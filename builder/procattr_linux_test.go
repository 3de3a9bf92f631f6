package builder

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRun_ChildDiesWithNode kills a process that runs a command, as a
// node is killed with -9: the command must not outlive it.
func TestRun_ChildDiesWithNode(t *testing.T) {
	if pidFile := os.Getenv("DRVMESH_TEST_CHILD_PIDFILE"); pidFile != "" {
		// The "node": run a long command and wait to be killed.
		c := command{path: "/bin/sh", args: []string{"-c", "echo $$ > " + pidFile + "; exec sleep 60"}, log: io.Discard}
		c.run(context.Background())
		return
	}
	pidFile := filepath.Join(t.TempDir(), "pid")
	node := exec.Command(os.Args[0], "-test.run=^TestRun_ChildDiesWithNode$")
	node.Env = append(os.Environ(), "DRVMESH_TEST_CHILD_PIDFILE="+pidFile)
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	deadline := time.Now().Add(10 * time.Second)
	for pid == 0 && time.Now().Before(deadline) {
		b, _ := os.ReadFile(pidFile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		time.Sleep(10 * time.Millisecond)
	}
	if pid == 0 {
		node.Process.Kill()
		t.Fatal("the command did not start")
	}
	node.Process.Kill()
	node.Wait()
	deadline = time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("process %d outlived the node that started it", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid runs (a zombie waiting for its reaper has
// ended).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}
