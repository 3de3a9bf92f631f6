package worker

import "syscall"

// dieWithParent makes a daemon started for this process get SIGTERM when
// this process dies, even by SIGKILL.
func dieWithParent(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGTERM }
