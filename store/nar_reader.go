package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
)

// NarHeader describes one node of a NAR, as returned by NarReader.Next.
type NarHeader struct {
	// Path is relative to the root, "/"-separated; the root is "".
	Path string
	// Type is regular, directory or symlink.
	Type NarType
	// Executable is set for executable regular files.
	Executable bool
	// Size is the length of a regular file's contents.
	Size int64
	// LinkTarget is a symlink's target.
	LinkTarget string

	// offset is where a regular file's contents start in the NAR.
	offset int64
}

// narFrame is an open directory of the NAR being read.
type narFrame struct {
	pathLen int    // length of the directory's path in NarReader.path
	prev    string // the previous entry name, for the order check
	hasPrev bool
}

// narReadBufSize is the read-ahead buffer of a NarReader.
const narReadBufSize = 64 << 10

// NarReader reads a NAR strictly, node by node, like tar.Reader: Next
// returns the next node's header and Read the contents of the current
// regular file. File contents are streamed, never buffered whole, and no
// allocation is sized by a length read from the stream beyond the small
// bounds on names, targets and tags.
//
// It accepts exactly the canonical form Nix writes, so anything it accepts
// re-serializes byte for byte: "executable" must come before "contents",
// entries must be sorted byte-wise without duplicates, names must not be
// empty, ".", "..", or contain "/" or NUL, symlink targets must be
// non-empty without NUL, padding must be zero, and nothing may follow the
// root node. It also bounds relative paths to 4096 bytes and nesting to 256
// directories. Every format violation wraps ErrBadNar.
type NarReader struct {
	r        io.Reader
	buf      []byte
	pos, end int
	off      int64     // bytes consumed so far
	hash     hash.Hash // when set, receives every consumed byte
	rerr     error     // sticky error of r

	started  bool
	inFile   bool
	fileSize int64
	fileLeft int64
	stack    []narFrame
	path     []byte
	err      error
	str      [narMaxName]byte
}

// NewNarReader returns a reader of the NAR in r. It reads r through its own
// buffer, so it may read ahead of the NAR's end (which must be r's end).
func NewNarReader(r io.Reader) *NarReader {
	return &NarReader{r: r, buf: make([]byte, narReadBufSize)}
}

func narErrorf(format string, a ...any) error {
	return fmt.Errorf("nar: "+format+": %w", append(a, ErrBadNar)...)
}

// fill reads more input into the buffer; it returns io.EOF at the end.
func (r *NarReader) fill() error {
	if r.pos == r.end {
		r.pos, r.end = 0, 0
	}
	for r.rerr == nil {
		n, err := r.r.Read(r.buf[r.end:])
		r.end += n
		if err != nil {
			r.rerr = err
		}
		if n > 0 {
			return nil
		}
	}
	return r.rerr
}

// consume marks the next n buffered bytes as read.
func (r *NarReader) consume(n int) {
	if r.hash != nil {
		r.hash.Write(r.buf[r.pos : r.pos+n])
	}
	r.pos += n
	r.off += int64(n)
}

// readErr maps an error of the underlying reader at a point where more
// NAR bytes were required.
func (r *NarReader) readErr(err error) error {
	if errors.Is(err, io.EOF) {
		return narErrorf("truncated at offset %d", r.off)
	}
	return fmt.Errorf("nar: read: %w", err)
}

// readFull fills p from the stream.
func (r *NarReader) readFull(p []byte) error {
	for len(p) > 0 {
		if r.pos == r.end {
			if err := r.fill(); err != nil {
				return r.readErr(err)
			}
		}
		n := copy(p, r.buf[r.pos:r.end])
		r.consume(n)
		p = p[n:]
	}
	return nil
}

func (r *NarReader) readU64() (uint64, error) {
	var b [8]byte
	if err := r.readFull(b[:]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

// readPad reads and checks the zero padding after n bytes of a string.
func (r *NarReader) readPad(n uint64) error {
	var b [8]byte
	p := b[:narPad(n)]
	if err := r.readFull(p); err != nil {
		return err
	}
	for _, c := range p {
		if c != 0 {
			return narErrorf("non-zero padding at offset %d", r.off-int64(len(p)))
		}
	}
	return nil
}

// readStr reads a string token of at most max bytes. The result is valid
// until the next call.
func (r *NarReader) readStr(max int, what string) ([]byte, error) {
	n, err := r.readU64()
	if err != nil {
		return nil, err
	}
	if n > uint64(max) {
		return nil, narErrorf("%s of %d bytes at offset %d is too long", what, n, r.off-8)
	}
	s := r.str[:n]
	if err := r.readFull(s); err != nil {
		return nil, err
	}
	if err := r.readPad(n); err != nil {
		return nil, err
	}
	return s, nil
}

// expect reads a tag token that must equal tok.
func (r *NarReader) expect(tok string) error {
	s, err := r.readStr(narMaxTag, "tag")
	if err != nil {
		return err
	}
	if string(s) != tok {
		return narErrorf("expected %q at offset %d, got %q", tok, r.off-int64(8+len(s)+narPad(uint64(len(s)))), s)
	}
	return nil
}

// Next advances to the next node, skipping what is left of the current
// file. It returns io.EOF after the root node is complete and the input
// has ended.
func (r *NarReader) Next() (*NarHeader, error) {
	if r.err != nil {
		return nil, r.err
	}
	h, err := r.next()
	if err != nil {
		r.err = err
		r.inFile = false
	}
	return h, err
}

func (r *NarReader) next() (*NarHeader, error) {
	if !r.started {
		r.started = true
		s, err := r.readStr(narMaxTag, "magic")
		if err != nil {
			return nil, err
		}
		if string(s) != narMagic {
			return nil, narErrorf("bad magic %q", s)
		}
		return r.node()
	}
	if r.inFile {
		if err := r.skipFile(); err != nil {
			return nil, err
		}
		r.inFile = false
		if err := r.readPad(uint64(r.fileSize)); err != nil {
			return nil, err
		}
		if err := r.expect(")"); err != nil {
			return nil, err
		}
		if err := r.endNode(); err != nil {
			return nil, err
		}
	}
	for {
		if len(r.stack) == 0 {
			return nil, r.finish()
		}
		top := &r.stack[len(r.stack)-1]
		tag, err := r.readStr(narMaxTag, "tag")
		if err != nil {
			return nil, err
		}
		switch string(tag) {
		case ")":
			r.stack = r.stack[:len(r.stack)-1]
			if err := r.endNode(); err != nil {
				return nil, err
			}
		case "entry":
			if err := r.expect("("); err != nil {
				return nil, err
			}
			if err := r.expect("name"); err != nil {
				return nil, err
			}
			b, err := r.readStr(narMaxName, "name")
			if err != nil {
				return nil, err
			}
			name := string(b)
			if err := checkNarName(name); err != nil {
				return nil, err
			}
			if top.hasPrev && name <= top.prev {
				return nil, narErrorf("entry %q after %q: unsorted or duplicate", name, top.prev)
			}
			top.prev, top.hasPrev = name, true
			r.path = r.path[:top.pathLen]
			if len(r.path) > 0 {
				r.path = append(r.path, '/')
			}
			r.path = append(r.path, name...)
			if len(r.path) > narMaxPath {
				return nil, narErrorf("path longer than %d bytes", narMaxPath)
			}
			if err := r.expect("node"); err != nil {
				return nil, err
			}
			return r.node()
		default:
			return nil, narErrorf("unexpected tag %q in directory at offset %d", tag, r.off)
		}
	}
}

// node reads a node's opening up to its header, at r.path.
func (r *NarReader) node() (*NarHeader, error) {
	if err := r.expect("("); err != nil {
		return nil, err
	}
	if err := r.expect("type"); err != nil {
		return nil, err
	}
	t, err := r.readStr(narMaxTag, "type")
	if err != nil {
		return nil, err
	}
	h := &NarHeader{Path: string(r.path), Type: NarType(t)}
	switch h.Type {
	case NarRegular:
		tag, err := r.readStr(narMaxTag, "tag")
		if err != nil {
			return nil, err
		}
		if string(tag) == "executable" {
			if err := r.expect(""); err != nil {
				return nil, err
			}
			h.Executable = true
			if tag, err = r.readStr(narMaxTag, "tag"); err != nil {
				return nil, err
			}
		}
		if string(tag) != "contents" {
			return nil, narErrorf("expected contents in %q, got %q", h.Path, tag)
		}
		n, err := r.readU64()
		if err != nil {
			return nil, err
		}
		if n > math.MaxInt64 {
			return nil, narErrorf("file size %d too large", n)
		}
		h.Size, h.offset = int64(n), r.off
		r.inFile, r.fileSize, r.fileLeft = true, h.Size, h.Size
		return h, nil
	case NarSymlink:
		if err := r.expect("target"); err != nil {
			return nil, err
		}
		b, err := r.readStr(narMaxTarget, "symlink target")
		if err != nil {
			return nil, err
		}
		h.LinkTarget = string(b)
		if err := checkNarTarget(h.LinkTarget); err != nil {
			return nil, err
		}
		if err := r.expect(")"); err != nil {
			return nil, err
		}
		if err := r.endNode(); err != nil {
			return nil, err
		}
		return h, nil
	case NarDirectory:
		if len(r.stack) >= narMaxDepth {
			return nil, narErrorf("directories nested deeper than %d", narMaxDepth)
		}
		r.stack = append(r.stack, narFrame{pathLen: len(r.path)})
		return h, nil
	default:
		return nil, narErrorf("unknown node type %q", t)
	}
}

// endNode closes the entry that held a node just completed, if any.
func (r *NarReader) endNode() error {
	if len(r.stack) == 0 {
		return nil
	}
	return r.expect(")")
}

// finish checks that nothing follows the root node.
func (r *NarReader) finish() error {
	if r.pos == r.end {
		if err := r.fill(); err != nil {
			if errors.Is(err, io.EOF) {
				return io.EOF
			}
			return fmt.Errorf("nar: read: %w", err)
		}
	}
	return narErrorf("trailing data after the root node at offset %d", r.off)
}

// skipFile consumes the rest of the current file's contents.
func (r *NarReader) skipFile() error {
	for r.fileLeft > 0 {
		if r.pos == r.end {
			if err := r.fill(); err != nil {
				return r.readErr(err)
			}
		}
		n := int(min(int64(r.end-r.pos), r.fileLeft))
		r.consume(n)
		r.fileLeft -= int64(n)
	}
	return nil
}

// Read reads the contents of the current regular file. It returns io.EOF
// at the end of the file, and 0, io.EOF when the current node is not a
// regular file.
func (r *NarReader) Read(p []byte) (int, error) {
	if !r.inFile || r.fileLeft == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.fileLeft {
		p = p[:r.fileLeft]
	}
	var n int
	if r.pos < r.end {
		n = copy(p, r.buf[r.pos:r.end])
		r.consume(n)
	} else if len(p) >= len(r.buf) {
		// Large read with an empty buffer: read straight into p.
		if r.rerr != nil {
			return 0, r.fail(r.readErr(r.rerr))
		}
		var err error
		n, err = r.r.Read(p)
		if n > 0 {
			if r.hash != nil {
				r.hash.Write(p[:n])
			}
			r.off += int64(n)
		}
		if err != nil {
			r.rerr = err
			if n == 0 {
				return 0, r.fail(r.readErr(err))
			}
		}
	} else {
		if err := r.fill(); err != nil {
			return 0, r.fail(r.readErr(err))
		}
		n = copy(p, r.buf[r.pos:r.end])
		r.consume(n)
	}
	r.fileLeft -= int64(n)
	return n, nil
}

// fail makes err sticky for Next and Read.
func (r *NarReader) fail(err error) error {
	r.err, r.inFile = err, false
	return err
}
