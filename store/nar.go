package store

import (
	"encoding/binary"
	"fmt"
)

// NAR token strings (docs/formats.md §3.1).
const (
	narMagic = "nix-archive-1"

	// narMaxName bounds a directory entry name read from a NAR.
	narMaxName = 4096
	// narMaxTarget bounds a symlink target read from a NAR.
	narMaxTarget = 4096
	// narMaxTag bounds any other token (magic, "(", "type", "regular"...).
	narMaxTag = 32
	// narMaxPath bounds the relative path of an entry ("a/b/c"), so that
	// a hostile NAR cannot make the reader build huge path strings.
	narMaxPath = 4096
	// narMaxDepth bounds directory nesting.
	narMaxDepth = 256
)

// NarType is the type of a node in a NAR.
type NarType string

// The three node types a NAR can hold.
const (
	NarRegular   NarType = "regular"
	NarDirectory NarType = "directory"
	NarSymlink   NarType = "symlink"
)

// narPad returns the number of zero bytes that follow n bytes of a string.
func narPad(n uint64) int { return int((8 - n%8) % 8) }

// narZeros is the source of padding bytes.
var narZeros [8]byte

// appendNarString appends str(s): the length as u64 little-endian, s, and
// zero padding up to a multiple of 8.
func appendNarString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(len(s)))
	b = append(b, s...)
	return append(b, narZeros[:narPad(uint64(len(s)))]...)
}

// checkNarName reports whether name may appear as a directory entry.
func checkNarName(name string) error {
	switch {
	case name == "", name == ".", name == "..":
		return fmt.Errorf("invalid entry name %q: %w", name, ErrBadNar)
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '/' || name[i] == 0 {
			return fmt.Errorf("invalid entry name %q: %w", name, ErrBadNar)
		}
	}
	return nil
}

// checkNarTarget reports whether t may be a symlink target.
func checkNarTarget(t string) error {
	if t == "" {
		return fmt.Errorf("empty symlink target: %w", ErrBadNar)
	}
	for i := 0; i < len(t); i++ {
		if t[i] == 0 {
			return fmt.Errorf("symlink target contains NUL: %w", ErrBadNar)
		}
	}
	return nil
}
