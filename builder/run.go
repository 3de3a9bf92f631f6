package builder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// killGrace is how long a canceled command gets after SIGTERM to stop its
// builds before its process group is killed. Nix and Guix handle SIGTERM by
// killing their builders, which run in sessions of their own that a
// SIGKILL of the client's group would not reach.
const killGrace = 5 * time.Second

// buildNice is the niceness of the commands the node runs, and so of the
// builds they run themselves (a chroot store; a system daemon's builds
// keep the daemon's): on a machine whose cores the builds fill, the node
// (scheduling, consensus, serving nars) must not wait behind them. The
// builds still get every cycle the node leaves idle.
const buildNice = 19

// headSize and tailSize bound the bytes of a command's output kept for
// error messages and message parsing: the start (where Nix announces what
// it builds) and the end (where it says what failed).
const (
	headSize = 16 << 10
	tailSize = 64 << 10
)

// command is one tool invocation: its own process group, output streamed
// to log, stdout and the combined output's tail kept for parsing.
type command struct {
	path string
	args []string
	env  []string
	log  io.Writer
	// started, if set, receives the process group id once running.
	started func(pgid int)
}

// cmdResult is what a finished command left.
type cmdResult struct {
	stdout   []byte
	head     []byte // start of stdout and stderr interleaved
	output   []byte // tail of stdout and stderr interleaved
	exitCode int    // -1 when killed by a signal
	canceled bool
}

// syncWriter serializes writes from the stdout and stderr copiers.
type syncWriter struct {
	mu   sync.Mutex
	log  io.Writer
	head []byte
	tail []byte
}

func (w *syncWriter) write(p []byte, extra *bytes.Buffer) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if extra != nil {
		extra.Write(p)
	}
	if n := min(headSize-len(w.head), len(p)); n > 0 {
		w.head = append(w.head, p[:n]...)
	}
	w.tail = append(w.tail, p...)
	if len(w.tail) > 2*tailSize {
		w.tail = append(w.tail[:0], w.tail[len(w.tail)-tailSize:]...)
	}
	if w.log != nil {
		// A failing log writer must not stop the build.
		_, _ = w.log.Write(p)
	}
	return len(p), nil
}

type streamWriter struct {
	w     *syncWriter
	extra *bytes.Buffer
}

func (s streamWriter) Write(p []byte) (int, error) { return s.w.write(p, s.extra) }

// run starts the command in a process group of its own, tied to this
// process's life (childAttr), and waits for it.
// When ctx ends, the group gets SIGTERM and, killGrace later, SIGKILL. A
// non-zero exit is not an error here: the caller interprets it.
func (c command) run(ctx context.Context) (cmdResult, error) {
	var stdout bytes.Buffer
	sw := &syncWriter{log: c.log}
	cmd := exec.Command(c.path, c.args...)
	cmd.Env = c.env
	cmd.Stdout = streamWriter{w: sw, extra: &stdout}
	cmd.Stderr = streamWriter{w: sw}
	cmd.SysProcAttr = childAttr()
	// A stray grandchild holding the output pipes must not hang Wait.
	cmd.WaitDelay = killGrace
	if err := ctx.Err(); err != nil {
		return cmdResult{canceled: true}, nil
	}
	if err := cmd.Start(); err != nil {
		return cmdResult{}, fmt.Errorf("start %s: %w: %v", c.path, ErrBackend, err)
	}
	pgid := cmd.Process.Pid
	// Best effort: a command that cannot be reniced still runs.
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, pgid, buildNice)
	if c.started != nil {
		c.started(pgid)
	}
	done := make(chan struct{})
	var canceled bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		canceled = true
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		t := time.NewTimer(killGrace)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	}()
	err := cmd.Wait()
	close(done)
	wg.Wait()
	// Whatever the leader left in its group goes with it.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	res := cmdResult{stdout: stdout.Bytes(), head: sw.head, output: sw.tail, exitCode: cmd.ProcessState.ExitCode(), canceled: canceled}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		return res, fmt.Errorf("run %s: %w: %v", c.path, ErrBackend, err)
	}
	return res, nil
}

// lastLines returns the last n non-empty lines of out, for error messages.
func lastLines(out []byte, n int) string {
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("; ")))
}
