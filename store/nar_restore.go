package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Restore unpacks the NAR read from r into dir, which must not exist, as
// nix-store --restore does. The NAR is checked strictly as it streams (see
// NarReader); on a bad NAR, Restore stops with an error wrapping ErrBadNar
// and leaves what it had created so far.
//
// Every entry is created relative to an open descriptor of its parent
// directory that was itself created here (mkdirat, openat with O_EXCL and
// O_NOFOLLOW, symlinkat), so nothing is written or followed outside dir:
// symlinks are created as links and never traversed. Files are created
// 0666 and directories 0777 minus the umask; executables get the execute
// bits added, as Nix does.
func Restore(r io.Reader, dir string) error {
	dir = filepath.Clean(dir)
	base := filepath.Base(dir)
	if base == "/" || base == "." || base == ".." {
		return fmt.Errorf("nar restore: invalid target %q", dir)
	}
	pfd, err := unix.Open(filepath.Dir(dir), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("nar restore: open parent of %s: %w", dir, err)
	}
	// fds[i] is the directory holding the nodes at depth i (the root is at
	// depth 0, in the parent of dir).
	fds := []int{pfd}
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	nr := NewNarReader(r)
	buf := make([]byte, 256<<10)
	for {
		h, err := nr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("nar restore: %w", err)
		}
		depth, name := 0, base
		if h.Path != "" {
			depth = strings.Count(h.Path, "/") + 1
			name = h.Path[strings.LastIndexByte(h.Path, '/')+1:]
		}
		if depth >= len(fds) {
			return fmt.Errorf("nar restore: %s: parent missing", h.Path)
		}
		for len(fds) > depth+1 {
			unix.Close(fds[len(fds)-1])
			fds = fds[:len(fds)-1]
		}
		at, full := fds[depth], filepath.Join(dir, h.Path)
		switch h.Type {
		case NarDirectory:
			if err := unix.Mkdirat(at, name, 0o777); err != nil {
				return fmt.Errorf("nar restore: mkdir %s: %w", full, err)
			}
			fd, err := unix.Openat(at, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("nar restore: open %s: %w", full, err)
			}
			fds = append(fds, fd)
		case NarSymlink:
			if err := unix.Symlinkat(h.LinkTarget, at, name); err != nil {
				return fmt.Errorf("nar restore: symlink %s: %w", full, err)
			}
		case NarRegular:
			if err := restoreFile(nr, at, name, full, h.Executable, buf); err != nil {
				return err
			}
		}
	}
}

// restoreFile creates name in the directory at and copies the current
// file of nr into it.
func restoreFile(nr *NarReader, at int, name, full string, exec bool, buf []byte) error {
	fd, err := unix.Openat(at, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o666)
	if err != nil {
		return fmt.Errorf("nar restore: create %s: %w", full, err)
	}
	f := os.NewFile(uintptr(fd), full)
	defer f.Close()
	for {
		n, err := nr.Read(buf)
		if n > 0 {
			if _, werr := f.Write(buf[:n]); werr != nil {
				return fmt.Errorf("nar restore: %w", werr)
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("nar restore: %w", err)
		}
	}
	if exec {
		fi, err := f.Stat()
		if err != nil {
			return fmt.Errorf("nar restore: %w", err)
		}
		if err := f.Chmod(fi.Mode().Perm() | 0o111); err != nil {
			return fmt.Errorf("nar restore: %w", err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("nar restore: close %s: %w", full, err)
	}
	return nil
}
