package store

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The `nix-store --export` stream (docs/formats.md §6.4), as Nix's exportPaths
// writes and importPaths reads it. Every integer is a u64 little-endian and
// every string a NAR string (length, bytes, zero padding to 8):
//
//	for each path:  1, NAR, 0x4558494e ("NIXE"), path,
//	                reference count, references, deriver or "",
//	                0 | 1 signature
//	after the last: 0
//
// Errors about the stream's structure wrap ErrBadNar, the format it is
// built from.

// exportMagic follows each NAR of an export stream.
const exportMagic = 0x4558494e

// Bounds on what an export stream's trailer may hold, unless
// ExportReader.SetLimits changes them.
const (
	exportMaxPath = 4096
	exportMaxRefs = 1 << 20
	exportMaxSig  = 64 << 10
)

// ExportLimits bound what one record's trailer may hold; each is checked
// before anything of that size is allocated. A zero field keeps the
// reader's default (4096-byte paths, 2^20 references, 64 KiB signatures).
type ExportLimits struct {
	MaxPath       int // bytes of the path, each reference and the deriver
	MaxReferences int // references of one record
	MaxSignature  int // bytes of the signature
}

// ExportInfo is the trailer of one record of an export stream: what
// follows the path's NAR.
type ExportInfo struct {
	// Path is the store path the NAR is the contents of.
	Path string
	// References are full store paths, in the order they were written.
	References []string
	// Deriver is the .drv that built Path, or "".
	Deriver string
	// Signature is Guix's signature sexp, or "" (Nix writes none and
	// ignores one on import).
	Signature string
}

// ExportWriter writes an export stream that `nix-store --import` reads.
// Close writes the end marker; it does not close the underlying writer.
type ExportWriter struct {
	bw  *bufio.Writer
	cw  countingWriter
	err error
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// NewExportWriter returns a writer of an export stream to w.
func NewExportWriter(w io.Writer) *ExportWriter {
	e := &ExportWriter{cw: countingWriter{w: w}}
	e.bw = bufio.NewWriterSize(&e.cw, 64<<10)
	return e
}

// Written is the number of bytes handed to the underlying writer so far.
func (e *ExportWriter) Written() int64 { return e.cw.n }

// WritePath writes one record whose NAR is the serialization of the file
// tree at physical (see DumpPath), streamed without holding it in memory.
func (e *ExportWriter) WritePath(info ExportInfo, physical string) error {
	return e.write(info, func(w io.Writer) error { return DumpPath(w, physical) })
}

// WriteNar writes one record whose NAR is read from nar, copied as is.
func (e *ExportWriter) WriteNar(info ExportInfo, nar io.Reader) error {
	return e.write(info, func(w io.Writer) error {
		if _, err := io.Copy(w, nar); err != nil {
			return fmt.Errorf("export: copy nar of %s: %w", info.Path, err)
		}
		return nil
	})
}

func (e *ExportWriter) write(info ExportInfo, nar func(io.Writer) error) error {
	if e.err != nil {
		return e.err
	}
	e.u64(1)
	if e.err != nil {
		return e.err
	}
	if err := nar(e.bw); err != nil {
		e.err = err
		return err
	}
	e.u64(exportMagic)
	e.str(info.Path)
	e.u64(uint64(len(info.References)))
	for _, r := range info.References {
		e.str(r)
	}
	e.str(info.Deriver)
	if info.Signature == "" {
		e.u64(0)
	} else {
		e.u64(1)
		e.str(info.Signature)
	}
	return e.err
}

// Close writes the end of the stream and flushes it.
func (e *ExportWriter) Close() error {
	e.u64(0)
	if e.err == nil {
		if err := e.bw.Flush(); err != nil {
			e.err = fmt.Errorf("export: write: %w", err)
		}
	}
	return e.err
}

func (e *ExportWriter) u64(v uint64) {
	if e.err != nil {
		return
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	if _, err := e.bw.Write(b[:]); err != nil {
		e.err = fmt.Errorf("export: write: %w", err)
	}
}

func (e *ExportWriter) str(s string) {
	if e.err != nil {
		return
	}
	if _, err := e.bw.Write(appendNarString(nil, s)); err != nil {
		e.err = fmt.Errorf("export: write: %w", err)
	}
}

// exportState is where an ExportReader is in its stream.
type exportState int

const (
	exportBetween exportState = iota // before a record's marker
	exportInNar                      // Next returned a NAR; Info not yet called
	exportEnd                        // the end marker was read
)

// ExportReader reads an export stream record by record, like tar.Reader:
//
//	for {
//		nar, err := er.Next()
//		if err == io.EOF { break }
//		... read nar to its end ...
//		info, err := er.Info()
//	}
//
// Next returns a reader of exactly the record's NAR bytes, found by
// following the NAR's structure. That framing checks the grammar and the
// bounds of NarReader but not entry order or names: check the NAR itself
// (CheckNar, NarReader) before trusting it. Nothing is buffered beyond a
// small read-ahead, so records of any size stream through.
type ExportReader struct {
	r     *bufio.Reader
	state exportState
	nar   narFramer
	err   error
	lim   ExportLimits
}

// NewExportReader returns a reader of the export stream in r. The stream
// must end right after its end marker.
func NewExportReader(r io.Reader) *ExportReader {
	br := bufio.NewReaderSize(r, 64<<10)
	return &ExportReader{r: br, nar: narFramer{src: br}, lim: ExportLimits{exportMaxPath, exportMaxRefs, exportMaxSig}}
}

// SetLimits bounds the trailers read from now on; zero fields keep the
// current bounds. A reader of untrusted streams sets tighter ones.
func (e *ExportReader) SetLimits(l ExportLimits) {
	if l.MaxPath > 0 {
		e.lim.MaxPath = l.MaxPath
	}
	if l.MaxReferences > 0 {
		e.lim.MaxReferences = l.MaxReferences
	}
	if l.MaxSignature > 0 {
		e.lim.MaxSignature = l.MaxSignature
	}
}

// Next advances to the next record and returns a reader of its NAR. It
// skips what is left of the current record if Info was not called. It
// returns io.EOF after the end marker, when the stream has ended.
func (e *ExportReader) Next() (io.Reader, error) {
	if e.err != nil {
		return nil, e.err
	}
	switch e.state {
	case exportEnd:
		return nil, io.EOF
	case exportInNar:
		if _, err := e.Info(); err != nil {
			return nil, err
		}
	}
	marker, err := e.u64("record marker")
	if err != nil {
		return nil, e.fail(err)
	}
	switch marker {
	case 0:
		if _, err := e.r.ReadByte(); err == nil {
			return nil, e.fail(exportErrorf("data after the end marker"))
		} else if !errors.Is(err, io.EOF) {
			return nil, e.fail(fmt.Errorf("export: read: %w", err))
		}
		e.state = exportEnd
		return nil, io.EOF
	case 1:
		e.nar.reset()
		e.state = exportInNar
		return &e.nar, nil
	}
	return nil, e.fail(exportErrorf("record marker %d, want 0 or 1", marker))
}

// Info reads the trailer of the record Next opened, first reading (and
// discarding) whatever of its NAR was not read.
func (e *ExportReader) Info() (ExportInfo, error) {
	if e.err != nil {
		return ExportInfo{}, e.err
	}
	if e.state != exportInNar {
		return ExportInfo{}, errors.New("export: Info without a record from Next")
	}
	if _, err := io.Copy(io.Discard, &e.nar); err != nil {
		return ExportInfo{}, e.fail(err)
	}
	info, err := e.trailer()
	if err != nil {
		return ExportInfo{}, e.fail(err)
	}
	e.state = exportBetween
	return info, nil
}

func (e *ExportReader) trailer() (ExportInfo, error) {
	var info ExportInfo
	magic, err := e.u64("magic")
	if err != nil {
		return info, err
	}
	if magic != exportMagic {
		return info, exportErrorf("magic %#x after the nar, want %#x", magic, exportMagic)
	}
	if info.Path, err = e.str(e.lim.MaxPath, "path"); err != nil {
		return info, err
	}
	count, err := e.u64("reference count")
	if err != nil {
		return info, err
	}
	if count > uint64(e.lim.MaxReferences) {
		return info, exportErrorf("%s has %d references", info.Path, count)
	}
	for range count {
		ref, err := e.str(e.lim.MaxPath, "reference")
		if err != nil {
			return info, err
		}
		info.References = append(info.References, ref)
	}
	if info.Deriver, err = e.str(e.lim.MaxPath, "deriver"); err != nil {
		return info, err
	}
	hasSig, err := e.u64("signature flag")
	if err != nil {
		return info, err
	}
	switch hasSig {
	case 0:
	case 1:
		if info.Signature, err = e.str(e.lim.MaxSignature, "signature"); err != nil {
			return info, err
		}
	default:
		return info, exportErrorf("signature flag %d, want 0 or 1", hasSig)
	}
	return info, nil
}

func (e *ExportReader) fail(err error) error {
	e.err = err
	return err
}

func (e *ExportReader) u64(what string) (uint64, error) {
	return readWireU64(e.r, what)
}

func (e *ExportReader) str(max int, what string) (string, error) {
	b, err := readWireStr(e.r, max, what)
	return string(b), err
}

// readWireU64 reads a u64 little-endian.
func readWireU64(r *bufio.Reader, what string) (uint64, error) {
	var b [8]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, wireReadErr(err, what)
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

// readWireStr reads a string of at most max bytes and its zero padding.
func readWireStr(r *bufio.Reader, max int, what string) ([]byte, error) {
	_, s, err := appendWireStr(r, nil, max, what)
	return s, err
}

// appendWireStr reads a string of at most max bytes and its zero padding,
// appending every byte it consumed, length and padding included, to raw.
// It returns raw and the string's bytes within it.
func appendWireStr(r *bufio.Reader, raw []byte, max int, what string) (out, s []byte, err error) {
	n, err := readWireU64(r, what)
	if err != nil {
		return raw, nil, err
	}
	if n > uint64(max) {
		return raw, nil, exportErrorf("%s of %d bytes is too long", what, n)
	}
	start := len(raw)
	raw = binary.LittleEndian.AppendUint64(raw, n)
	body := len(raw)
	total := int(n) + narPad(n)
	raw = append(raw, make([]byte, total)...)
	if _, err := io.ReadFull(r, raw[body:]); err != nil {
		return raw[:start], nil, wireReadErr(err, what)
	}
	for _, c := range raw[body+int(n):] {
		if c != 0 {
			return raw[:start], nil, exportErrorf("%s: non-zero padding", what)
		}
	}
	return raw, raw[body : body+int(n)], nil
}

func exportErrorf(format string, a ...any) error {
	return fmt.Errorf("export: "+format+": %w", append(a, ErrBadNar)...)
}

// wireReadErr maps a read error where more bytes were required.
func wireReadErr(err error, what string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return exportErrorf("%s: truncated", what)
	}
	return fmt.Errorf("export: %s: read: %w", what, err)
}

// frameState is where a narFramer is in the NAR it passes through.
type frameState int

const (
	frameMagic    frameState = iota // before "nix-archive-1"
	frameNode                       // before a node's "("
	frameContents                   // inside a regular file's contents
	frameDir                        // before a directory's next "entry" or ")"
	frameDone                       // after the root node
)

// narFramer passes through exactly one NAR from src, found by following
// its grammar: tokens are parsed into out and handed on, file contents
// are copied straight through.
type narFramer struct {
	src   *bufio.Reader
	out   []byte
	off   int
	st    frameState
	depth int   // open directories
	left  int64 // contents of the current file not yet passed on
	pad   int   // padding after those contents
	err   error
}

func (f *narFramer) reset() {
	f.out, f.off, f.st, f.depth, f.left, f.pad, f.err = f.out[:0], 0, frameMagic, 0, 0, 0, nil
}

// Read passes on the NAR's bytes and returns io.EOF at its end.
func (f *narFramer) Read(p []byte) (int, error) {
	for {
		if f.off < len(f.out) {
			n := copy(p, f.out[f.off:])
			f.off += n
			return n, nil
		}
		f.out, f.off = f.out[:0], 0
		if f.err != nil {
			return 0, f.err
		}
		switch {
		case f.st == frameDone:
			return 0, io.EOF
		case f.st == frameContents && f.left > 0:
			if len(p) == 0 {
				return 0, nil
			}
			if int64(len(p)) > f.left {
				p = p[:f.left]
			}
			n, err := f.src.Read(p)
			f.left -= int64(n)
			if n > 0 {
				return n, nil
			}
			if err == nil {
				continue
			}
			f.err = wireReadErr(err, "nar contents")
			return 0, f.err
		}
		if err := f.step(); err != nil {
			f.err = err
			return 0, err
		}
	}
}

// tok reads one string token into out and returns it.
func (f *narFramer) tok(max int, what string) (string, error) {
	var s []byte
	var err error
	f.out, s, err = appendWireStr(f.src, f.out, max, "nar "+what)
	return string(s), err
}

// expect reads a token that must be want.
func (f *narFramer) expect(want string) error {
	s, err := f.tok(narMaxTag, "tag")
	if err != nil {
		return err
	}
	if s != want {
		return exportErrorf("nar: expected %q, got %q", want, s)
	}
	return nil
}

// step parses the tokens up to the next file contents, directory entry or
// end of node, appending them to out.
func (f *narFramer) step() error {
	switch f.st {
	case frameMagic:
		if err := f.expect(narMagic); err != nil {
			return err
		}
		f.st = frameNode
		return nil
	case frameNode:
		return f.node()
	case frameContents:
		var pad [8]byte
		if _, err := io.ReadFull(f.src, pad[:f.pad]); err != nil {
			return wireReadErr(err, "nar padding")
		}
		for _, c := range pad[:f.pad] {
			if c != 0 {
				return exportErrorf("nar: non-zero padding after file contents")
			}
		}
		f.out = append(f.out, pad[:f.pad]...)
		if err := f.expect(")"); err != nil {
			return err
		}
		return f.nodeDone()
	case frameDir:
		tag, err := f.tok(narMaxTag, "tag")
		if err != nil {
			return err
		}
		switch tag {
		case ")":
			f.depth--
			return f.nodeDone()
		case "entry":
			for _, t := range []string{"(", "name"} {
				if err := f.expect(t); err != nil {
					return err
				}
			}
			if _, err := f.tok(narMaxName, "entry name"); err != nil {
				return err
			}
			if err := f.expect("node"); err != nil {
				return err
			}
			f.st = frameNode
			return nil
		}
		return exportErrorf("nar: unexpected tag %q in a directory", tag)
	}
	return exportErrorf("nar: read past its end")
}

// node parses a node's opening.
func (f *narFramer) node() error {
	for _, t := range []string{"(", "type"} {
		if err := f.expect(t); err != nil {
			return err
		}
	}
	typ, err := f.tok(narMaxTag, "type")
	if err != nil {
		return err
	}
	switch NarType(typ) {
	case NarRegular:
		tag, err := f.tok(narMaxTag, "tag")
		if err != nil {
			return err
		}
		if tag == "executable" {
			if err := f.expect(""); err != nil {
				return err
			}
			if tag, err = f.tok(narMaxTag, "tag"); err != nil {
				return err
			}
		}
		if tag != "contents" {
			return exportErrorf("nar: expected \"contents\", got %q", tag)
		}
		var b [8]byte
		if _, err := io.ReadFull(f.src, b[:]); err != nil {
			return wireReadErr(err, "nar file size")
		}
		f.out = append(f.out, b[:]...)
		n := binary.LittleEndian.Uint64(b[:])
		if n > 1<<62 {
			return exportErrorf("nar: file size %d too large", n)
		}
		f.left, f.pad, f.st = int64(n), narPad(n), frameContents
		return nil
	case NarSymlink:
		if err := f.expect("target"); err != nil {
			return err
		}
		if _, err := f.tok(narMaxTarget, "symlink target"); err != nil {
			return err
		}
		if err := f.expect(")"); err != nil {
			return err
		}
		return f.nodeDone()
	case NarDirectory:
		if f.depth >= narMaxDepth {
			return exportErrorf("nar: directories nested deeper than %d", narMaxDepth)
		}
		f.depth++
		f.st = frameDir
		return nil
	}
	return exportErrorf("nar: unknown node type %q", typ)
}

// nodeDone follows a complete node: the end of the NAR at the root, else
// the ")" that closes the directory entry holding it.
func (f *narFramer) nodeDone() error {
	if f.depth == 0 {
		f.st = frameDone
		return nil
	}
	if err := f.expect(")"); err != nil {
		return err
	}
	f.st = frameDir
	return nil
}
