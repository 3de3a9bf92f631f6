package worker

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// Bounds on what the daemon may send. A store path is at most a store dir
// plus 32+1+211 bytes; messages (log lines, errors, version strings,
// signatures, realisations) are at most maxMsgLen.
const (
	maxPathLen  = 4096
	maxMsgLen   = 1 << 20
	maxListLen  = 1 << 20
	maxFields   = 256
	maxTraces   = 1024
	replyBudget = 64 << 20 // bytes one reply or frame may make us keep
	ioChunk     = 64 << 10 // the largest buffer sized by a peer's length
)

var zeroPad [8]byte

// reader reads the protocol's primitives with bounds.
type reader struct {
	r      *bufio.Reader
	budget int64 // bytes strings may still take in the current reply
}

func (r *reader) reset() { r.budget = replyBudget }

func (r *reader) u64() (uint64, error) {
	var b [8]byte
	if _, err := io.ReadFull(r.r, b[:]); err != nil {
		return 0, readErr(err)
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

func (r *reader) bool() (bool, error) {
	v, err := r.u64()
	if err != nil {
		return false, err
	}
	switch v {
	case 0:
		return false, nil
	case 1:
		return true, nil
	}
	return false, fmt.Errorf("%w: boolean %d", ErrProtocol, v)
}

// str reads a string of at most max bytes.
func (r *reader) str(max int) (string, error) {
	n, err := r.u64()
	if err != nil {
		return "", err
	}
	if n > uint64(max) || int64(n) > r.budget {
		return "", fmt.Errorf("%w: string of %d bytes (limit %d)", ErrProtocol, n, min(int64(max), r.budget))
	}
	r.budget -= int64(n)
	b := make([]byte, n)
	if _, err := io.ReadFull(r.r, b); err != nil {
		return "", readErr(err)
	}
	if err := r.pad(n); err != nil {
		return "", err
	}
	return string(b), nil
}

// pad reads and checks the zero padding after n bytes.
func (r *reader) pad(n uint64) error {
	k := (8 - n%8) % 8
	if k == 0 {
		return nil
	}
	var b [8]byte
	if _, err := io.ReadFull(r.r, b[:k]); err != nil {
		return readErr(err)
	}
	if [8]byte(b) != zeroPad {
		return fmt.Errorf("%w: non-zero padding", ErrProtocol)
	}
	return nil
}

// strs reads a list of strings of at most maxLen bytes each.
func (r *reader) strs(maxLen int) ([]string, error) {
	n, err := r.u64()
	if err != nil {
		return nil, err
	}
	// Each item takes at least 8 bytes of budget, so a count beyond what
	// the budget allows is refused before any item is read.
	if n > maxListLen || int64(n) > r.budget/8 {
		return nil, fmt.Errorf("%w: list of %d items", ErrProtocol, n)
	}
	r.budget -= int64(n) * 8
	out := make([]string, 0, min(n, 64))
	for range n {
		s, err := r.str(maxLen)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// skip discards n bytes plus their padding, in bounded chunks.
func (r *reader) skip(n uint64) error {
	if _, err := io.CopyN(io.Discard, r.r, int64(n)); err != nil {
		return readErr(err)
	}
	return r.pad(n)
}

func readErr(err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read from daemon: %w", err)
}

// writer writes the protocol's primitives.
type writer struct {
	w *bufio.Writer
}

func (w *writer) u64(v uint64) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	_, _ = w.w.Write(b[:]) // bufio keeps the first error for flush
}

func (w *writer) bool(v bool) {
	if v {
		w.u64(1)
	} else {
		w.u64(0)
	}
}

func (w *writer) str(s string) {
	w.u64(uint64(len(s)))
	_, _ = w.w.WriteString(s)
	if k := (8 - len(s)%8) % 8; k > 0 {
		_, _ = w.w.Write(zeroPad[:k])
	}
}

func (w *writer) strs(ss []string) {
	w.u64(uint64(len(ss)))
	for _, s := range ss {
		w.str(s)
	}
}

func (w *writer) flush() error {
	if err := w.w.Flush(); err != nil {
		return fmt.Errorf("write to daemon: %w", err)
	}
	return nil
}
