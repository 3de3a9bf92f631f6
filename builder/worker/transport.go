package worker

import (
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// DefaultSocket is the system Nix daemon's socket.
const DefaultSocket = "/nix/var/nix/daemon-socket/socket"

// stopGrace is how long a daemon subprocess gets, once its stdin is
// closed, to stop its builds and exit before its process group is killed.
const stopGrace = 5 * time.Second

// DialUnix connects to a daemon's Unix socket, e.g. DefaultSocket.
func DialUnix(ctx context.Context, path string) (io.ReadWriteCloser, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("dial daemon: %w", err)
	}
	return c, nil
}

// procConn is a daemon subprocess (nix-daemon --stdio) spoken to over
// its standard streams.
type procConn struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  io.ReadCloser
	once sync.Once
}

// StartStdio starts cmd, a daemon speaking the protocol on its standard
// streams, e.g. nix-daemon --stdio --store 'local?root=DIR', in a process
// group of its own. cmd's Stdin and Stdout must be unset; its Stderr is
// the caller's. Closing the connection closes the daemon's stdin, which
// makes it kill its build and exit; a daemon still running stopGrace
// later is killed with its process group.
func StartStdio(cmd *exec.Cmd) (io.ReadWriteCloser, error) {
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("start daemon: %w", err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("start daemon: %w", err)
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	dieWithParent(cmd.SysProcAttr)
	cmd.WaitDelay = stopGrace
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start daemon: %w", err)
	}
	return &procConn{cmd: cmd, in: in, out: out}, nil
}

func (p *procConn) Read(b []byte) (int, error)  { return p.out.Read(b) }
func (p *procConn) Write(b []byte) (int, error) { return p.in.Write(b) }

// Close stops the daemon and waits for it.
func (p *procConn) Close() error {
	p.once.Do(func() {
		_ = p.in.Close()
		pgid := p.cmd.Process.Pid
		done := make(chan struct{})
		go func() {
			t := time.NewTimer(stopGrace)
			defer t.Stop()
			select {
			case <-done:
			case <-t.C:
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
			}
		}()
		// Wait closes stdout once the daemon has exited, which unblocks
		// a reader.
		// The daemon's exit status says nothing we could act on.
		_ = p.cmd.Wait()
		close(done)
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	})
	return nil
}
