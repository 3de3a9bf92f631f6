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

	"github.com/drvmesh/drvmesh/internal/testutil"
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
	t.Cleanup(func() { node.Process.Kill(); node.Wait() })
	testutil.Eventually(t, 10*time.Second, "the command starts", func() bool {
		b, _ := os.ReadFile(pidFile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return pid != 0
	})
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	node.Process.Kill()
	node.Wait()
	testutil.Eventually(t, 10*time.Second, "the command ends with the node that started it", func() bool { return !alive(pid) })
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
