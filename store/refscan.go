package store

import (
	"slices"
	"strings"
)

// hashPartLen is the length of a store path's hash part in nix32.
const hashPartLen = 32

var isNix32 = func() (t [256]bool) {
	for i := 0; i < len(nix32Alphabet); i++ {
		t[nix32Alphabet[i]] = true
	}
	return t
}()

// RefScanner finds which of a set of store paths a byte stream refers to,
// the way the Nix daemon decides an output's references: it looks for the
// 32-character hash part of each candidate anywhere in the NAR
// serialisation of the output, including across Write boundaries. Write
// the NAR to it, then call Found.
type RefScanner struct {
	want  map[[hashPartLen]byte]string // hash part → store path, not yet seen
	found []string
	tail  []byte // the last bytes written, up to hashPartLen-1
	buf   []byte // scratch: tail + head of the next write
}

// NewRefScanner returns a scanner for the candidate store paths. Paths
// whose base name has no hash part are ignored.
func NewRefScanner(candidates []string) *RefScanner {
	s := &RefScanner{want: make(map[[hashPartLen]byte]string, len(candidates))}
	for _, p := range candidates {
		base := p[strings.LastIndexByte(p, '/')+1:]
		if len(base) < hashPartLen {
			continue
		}
		var k [hashPartLen]byte
		copy(k[:], base)
		s.want[k] = p
	}
	return s
}

// Write scans p; it never fails.
func (s *RefScanner) Write(p []byte) (int, error) {
	if len(s.want) == 0 {
		return len(p), nil
	}
	// A hash may straddle the previous write and this one: scan the
	// previous tail joined to this write's head.
	if len(s.tail) > 0 {
		head := p[:min(len(p), hashPartLen-1)]
		s.buf = append(append(s.buf[:0], s.tail...), head...)
		s.scan(s.buf)
	}
	s.scan(p)
	// Keep the last hashPartLen-1 bytes of everything written so far.
	if len(p) >= hashPartLen-1 {
		s.tail = append(s.tail[:0], p[len(p)-(hashPartLen-1):]...)
	} else {
		s.tail = append(s.tail, p...)
		if over := len(s.tail) - (hashPartLen - 1); over > 0 {
			s.tail = append(s.tail[:0], s.tail[over:]...)
		}
	}
	return len(p), nil
}

// scan looks for candidate hashes in b. Like Nix, it checks each window
// from its last byte backwards, so a byte outside the alphabet skips every
// window containing it.
func (s *RefScanner) scan(b []byte) {
	for i := 0; i+hashPartLen <= len(b); {
		j := hashPartLen - 1
		for j >= 0 && isNix32[b[i+j]] {
			j--
		}
		if j >= 0 {
			i += j + 1
			continue
		}
		k := [hashPartLen]byte(b[i : i+hashPartLen])
		if p, ok := s.want[k]; ok {
			delete(s.want, k)
			s.found = append(s.found, p)
			if len(s.want) == 0 {
				return
			}
		}
		i++
	}
}

// Found returns the candidates seen so far, sorted.
func (s *RefScanner) Found() []string {
	out := slices.Clone(s.found)
	slices.Sort(out)
	return out
}
