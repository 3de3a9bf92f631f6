//go:build !linux

package builder

import "syscall"

// childAttr starts a command in a process group of its own. (Only Linux
// can tie a child's life to its parent's.)
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
