package testbed

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// inNamespace runs fn on an OS thread that has joined the network
// namespace at nsPath (a /run/netns file). Sockets fn creates stay in
// that namespace for their whole life, whichever thread uses them later.
// fn runs on a goroutine that inNamespace waits for, so inNamespace owns
// it. If the thread cannot return to its own namespace it stays locked
// and dies with the goroutine, so no other goroutine ever runs in the
// wrong namespace.
func inNamespace(nsPath string, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		restored, err := runLocked(nsPath, fn)
		if restored {
			runtime.UnlockOSThread()
		}
		done <- err
	}()
	return <-done
}

// runLocked does inNamespace's work on a locked thread; restored reports
// whether the thread is back in its own namespace.
func runLocked(nsPath string, fn func() error) (restored bool, err error) {
	self, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return true, fmt.Errorf("open own network namespace: %w", err)
	}
	defer unix.Close(self)
	target, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return true, fmt.Errorf("open network namespace %s: %w", nsPath, err)
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		return true, fmt.Errorf("enter network namespace %s: %w", nsPath, err)
	}
	err = fn()
	if serr := unix.Setns(self, unix.CLONE_NEWNET); serr != nil {
		return false, fmt.Errorf("leave network namespace %s: %w", nsPath, serr)
	}
	return true, err
}
