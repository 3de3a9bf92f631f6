package testbed

import (
	"context"
	"fmt"
	"net"
	"runtime"

	"golang.org/x/sys/unix"
)

// dialIn opens a connection from inside the network namespace at nsPath
// (a /run/netns file). The socket is created on a goroutine locked to an
// OS thread that has joined the namespace; it keeps the namespace after
// the thread goes back. The caller waits for that goroutine, so it owns
// it. If the thread cannot return to its namespace it stays locked and
// dies with the goroutine, so no other goroutine ever runs in the wrong
// namespace.
func dialIn(ctx context.Context, nsPath, network, addr string) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		conn, restored, err := dialLocked(ctx, nsPath, network, addr)
		if restored {
			runtime.UnlockOSThread()
		}
		done <- result{conn, err}
	}()
	r := <-done
	return r.conn, r.err
}

// dialLocked does dialIn's work on a locked thread; restored reports
// whether the thread is back in its own namespace.
func dialLocked(ctx context.Context, nsPath, network, addr string) (conn net.Conn, restored bool, err error) {
	self, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, true, fmt.Errorf("open own network namespace: %w", err)
	}
	defer unix.Close(self)
	target, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, true, fmt.Errorf("open network namespace %s: %w", nsPath, err)
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		return nil, true, fmt.Errorf("enter network namespace %s: %w", nsPath, err)
	}
	var d net.Dialer
	conn, err = d.DialContext(ctx, network, addr)
	if serr := unix.Setns(self, unix.CLONE_NEWNET); serr != nil {
		if conn != nil {
			conn.Close()
		}
		return nil, false, fmt.Errorf("leave network namespace %s: %w", nsPath, serr)
	}
	return conn, true, err
}
