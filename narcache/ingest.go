package narcache

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"

	"github.com/drvmesh/drvmesh/store"
)

// Expect is what a caller already knows about a NAR it hands to Ingest.
// Zero fields are not checked.
type Expect struct {
	NarHash store.Hash
	NarSize int64
}

// ingestOut is one compressed form being written during Ingest.
type ingestOut struct {
	compression string
	tmp         *os.File
	buf         *bufio.Writer
	fh          hash.Hash
	n           int64
	enc         io.WriteCloser
}

// Write is the sink under the compressor: temp file plus FileHash.
func (o *ingestOut) Write(p []byte) (int, error) {
	n, err := o.buf.Write(p)
	o.fh.Write(p[:n])
	o.n += int64(n)
	return n, err
}

// Ingest stores an uncompressed NAR stream in every configured compression,
// compressing each once while the stream is read and checked. The NAR must
// be strictly valid and, when exp says so, match NarHash and NarSize; else
// nothing is kept. It returns the NAR's hash and size and the stored files.
func (d *Disk) Ingest(ctx context.Context, r io.Reader, exp Expect) (Nar, error) {
	outs := make([]*ingestOut, 0, len(d.cfg.Compressions))
	cleanup := func() {
		for _, o := range outs {
			if o.enc != nil {
				o.enc.Close()
			}
			putIngestBuf(o.buf)
			o.tmp.Close()
			os.Remove(o.tmp.Name())
		}
	}
	for _, c := range d.cfg.Compressions {
		tmp, err := os.CreateTemp(d.dir, tmpPrefix+"*")
		if err != nil {
			cleanup()
			return Nar{}, fmt.Errorf("create temp nar: %w", err)
		}
		o := &ingestOut{compression: c, tmp: tmp, buf: getIngestBuf(tmp), fh: sha256.New()}
		outs = append(outs, o)
		if o.enc, err = newCompressor(c, o); err != nil {
			cleanup()
			return Nar{}, err
		}
	}
	fan := fanout(outs)
	src := io.TeeReader(&ctxReader{ctx: ctx, r: r}, fan)
	narHash, narSize, err := checkNarExact(src)
	if err == nil {
		err = checkAgainst(File{NarHash: exp.NarHash, NarSize: exp.NarSize},
			File{NarHash: narHash, NarSize: narSize})
	}
	if err != nil {
		cleanup()
		return Nar{}, fmt.Errorf("ingest nar: %w", err)
	}
	res := Nar{NarHash: narHash, NarSize: narSize}
	for i, o := range outs {
		err := o.enc.Close()
		o.enc = nil
		if err == nil {
			err = o.buf.Flush()
		}
		if err != nil {
			outs = outs[i:]
			cleanup()
			return Nar{}, fmt.Errorf("compress nar: %w", err)
		}
		putIngestBuf(o.buf)
		o.buf = nil
		f := File{Compression: o.compression, FileHash: hashOf(o.fh.Sum(nil)), FileSize: o.n,
			NarHash: narHash, NarSize: narSize}
		if _, err := d.place(o.tmp, f); err != nil {
			outs = outs[i:]
			cleanup()
			return Nar{}, err
		}
		res.Files = append(res.Files, f)
	}
	return res, nil
}

// ingestBufs keeps the write buffers of Ingest's temp files.
var ingestBufs = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, copyBufSize) }}

func getIngestBuf(w io.Writer) *bufio.Writer {
	b := ingestBufs.Get().(*bufio.Writer)
	b.Reset(w)
	return b
}

func putIngestBuf(b *bufio.Writer) {
	if b != nil {
		b.Reset(nil)
		ingestBufs.Put(b)
	}
}

// fanout writes to every compressor.
type fanout []*ingestOut

func (f fanout) Write(p []byte) (int, error) {
	for _, o := range f {
		if _, err := o.enc.Write(p); err != nil {
			return 0, fmt.Errorf("compress %s: %w", o.compression, err)
		}
	}
	return len(p), nil
}

// ctxReader fails reads once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
