package store

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"syscall"
)

// Pre-encoded token runs that the dumper writes verbatim.
var (
	narTokMagic     = narTokens(narMagic)
	narTokRegular   = narTokens("(", "type", "regular")
	narTokExec      = narTokens("executable", "")
	narTokContents  = narTokens("contents")
	narTokSymlink   = narTokens("(", "type", "symlink", "target")
	narTokDirectory = narTokens("(", "type", "directory")
	narTokEntry     = narTokens("entry", "(", "name")
	narTokNode      = narTokens("node")
	narTokClose     = narTokens(")")
)

func narTokens(ss ...string) []byte {
	var b []byte
	for _, s := range ss {
		b = appendNarString(b, s)
	}
	return b
}

// narSink takes a filled buffer and returns an empty one to fill next
// (possibly the same one).
type narSink func(full []byte) ([]byte, error)

// narDumper serializes a filesystem tree into a sequence of large buffers.
// File contents are read straight into the buffer, so every byte is copied
// once, from the kernel into the buffer the sink consumes.
type narDumper struct {
	buf  []byte
	sink narSink
	size int64
}

// narDumpBufSize is the buffer size of DumpPath; it is large enough for any
// single token (names and targets are bounded by the kernel to 4096 bytes).
const narDumpBufSize = 256 << 10

func (d *narDumper) flush() error {
	if len(d.buf) == 0 {
		return nil
	}
	d.size += int64(len(d.buf))
	b, err := d.sink(d.buf)
	d.buf = b[:0]
	return err
}

// raw appends b, flushing first when it does not fit.
func (d *narDumper) raw(b []byte) error {
	if cap(d.buf)-len(d.buf) < len(b) {
		if err := d.flush(); err != nil {
			return err
		}
		if cap(d.buf) < len(b) {
			return fmt.Errorf("nar token of %d bytes exceeds buffer: %w", len(b), ErrBadNar)
		}
	}
	d.buf = append(d.buf, b...)
	return nil
}

// str appends str(s).
func (d *narDumper) str(s string) error {
	need := 8 + len(s) + 8
	if cap(d.buf)-len(d.buf) < need {
		if err := d.flush(); err != nil {
			return err
		}
		if cap(d.buf) < need {
			return fmt.Errorf("nar string of %d bytes exceeds buffer: %w", len(s), ErrBadNar)
		}
	}
	d.buf = appendNarString(d.buf, s)
	return nil
}

// dumpPath writes the node for path (not the magic).
func (d *narDumper) dumpPath(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("nar: %w", err)
	}
	switch m := fi.Mode(); {
	case m.IsRegular():
		return d.dumpFile(path, fi.Size(), m&0o100 != 0)
	case m&os.ModeSymlink != 0:
		target, err := os.Readlink(path)
		if err != nil {
			return fmt.Errorf("nar: %w", err)
		}
		if err := d.raw(narTokSymlink); err != nil {
			return err
		}
		if err := d.str(target); err != nil {
			return err
		}
		return d.raw(narTokClose)
	case m.IsDir():
		return d.dumpDir(path)
	default:
		return fmt.Errorf("nar: %s: unsupported file type %s: %w", path, m.Type(), ErrBadNar)
	}
}

func (d *narDumper) dumpDir(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("nar: %w", err)
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return fmt.Errorf("nar: %w", err)
	}
	sort.Strings(names) // byte-wise, as Nix sorts
	if err := d.raw(narTokDirectory); err != nil {
		return err
	}
	for _, name := range names {
		if err := d.raw(narTokEntry); err != nil {
			return err
		}
		if err := d.str(name); err != nil {
			return err
		}
		if err := d.raw(narTokNode); err != nil {
			return err
		}
		if err := d.dumpPath(filepath.Join(path, name)); err != nil {
			return err
		}
		if err := d.raw(narTokClose); err != nil {
			return err
		}
	}
	return d.raw(narTokClose)
}

func (d *narDumper) dumpFile(path string, size int64, exec bool) error {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("nar: %w", err)
	}
	defer f.Close()
	if err := d.raw(narTokRegular); err != nil {
		return err
	}
	if exec {
		if err := d.raw(narTokExec); err != nil {
			return err
		}
	}
	if err := d.raw(narTokContents); err != nil {
		return err
	}
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(size))
	if err := d.raw(n[:]); err != nil {
		return err
	}
	for left := size; left > 0; {
		if len(d.buf) == cap(d.buf) {
			if err := d.flush(); err != nil {
				return err
			}
		}
		space := d.buf[len(d.buf):cap(d.buf)]
		if int64(len(space)) > left {
			space = space[:left]
		}
		k, err := f.Read(space)
		d.buf = d.buf[:len(d.buf)+k]
		left -= int64(k)
		if err != nil && left > 0 {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("nar: %s: file shrank while reading", path)
			}
			return fmt.Errorf("nar: %w", err)
		}
	}
	if err := d.raw(narZeros[:narPad(uint64(size))]); err != nil {
		return err
	}
	return d.raw(narTokClose)
}

// dump writes the whole NAR of path and flushes.
func (d *narDumper) dump(path string) error {
	if err := d.raw(narTokMagic); err != nil {
		return err
	}
	if err := d.dumpPath(path); err != nil {
		return err
	}
	return d.flush()
}

// DumpPath writes the NAR serialization of path to w, as nix-store --dump
// does: regular files, executables, symlinks (not followed) and
// directories, entries sorted byte-wise. Other file types are an error
// wrapping ErrBadNar.
func DumpPath(w io.Writer, path string) error {
	d := narDumper{
		buf: make([]byte, 0, narDumpBufSize),
		sink: func(b []byte) ([]byte, error) {
			if _, err := w.Write(b); err != nil {
				return b, fmt.Errorf("nar: write: %w", err)
			}
			return b, nil
		},
	}
	return d.dump(path)
}

// Buffers of the hashing pipeline of NarHashPath.
const (
	narHashBufSize = 1 << 20
	narHashBufs    = 4
)

// NarHashPath returns the NAR hash (SHA-256) and NAR size of path without
// holding the NAR in memory. Reading the tree and hashing run concurrently:
// one goroutine fills buffers from the files while another hashes them.
func NarHashPath(path string) (Hash, int64, error) {
	full := make(chan []byte, narHashBufs)
	free := make(chan []byte, narHashBufs)
	for range narHashBufs - 1 {
		free <- make([]byte, 0, narHashBufSize)
	}
	h := sha256.New()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for b := range full {
			h.Write(b)
			free <- b[:0]
		}
	}()
	d := narDumper{
		buf: make([]byte, 0, narHashBufSize),
		sink: func(b []byte) ([]byte, error) {
			full <- b
			return <-free, nil
		},
	}
	err := d.dump(path)
	close(full)
	<-done
	if err != nil {
		return Hash{}, 0, err
	}
	return Hash{Algo: SHA256, Digest: h.Sum(nil)}, d.size, nil
}
