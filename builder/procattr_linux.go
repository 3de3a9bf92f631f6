package builder

import "syscall"

// childAttr starts a command in a process group of its own that gets
// SIGTERM when this process dies, even by SIGKILL: a node that crashes
// leaves no nix-store behind (Nix and Guix then kill their builders).
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
