package store

import (
	"fmt"

	"golang.org/x/sys/unix"
)

func mkfifo(path string) error { return unix.Mkfifo(path, 0o644) }

func fmtSscan(s string, v any) (int, error) { return fmt.Sscan(s, v) }
