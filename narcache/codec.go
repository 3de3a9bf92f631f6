package narcache

import (
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// nopWriteCloser turns a Writer into a WriteCloser whose Close does nothing.
type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// newCompressor returns a writer that compresses into w. Close flushes the
// compressed stream but does not close w.
func newCompressor(compression string, w io.Writer) (io.WriteCloser, error) {
	switch compression {
	case CompressionZstd:
		if enc, ok := zstdEncoders.Get().(*zstd.Encoder); ok {
			enc.Reset(w)
			return &pooledZstd{enc: enc}, nil
		}
		enc, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault),
			zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(8<<20))
		if err != nil {
			return nil, fmt.Errorf("zstd writer: %w", err)
		}
		return &pooledZstd{enc: enc}, nil
	case CompressionXz:
		enc, err := xz.NewWriter(w)
		if err != nil {
			return nil, fmt.Errorf("xz writer: %w", err)
		}
		return enc, nil
	case CompressionNone:
		return nopWriteCloser{w}, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrBadCompression, compression)
}

// zstdEncoders keeps idle zstd encoders: a new one allocates megabytes of
// tables, which would dominate storing a small build output.
var zstdEncoders sync.Pool

// pooledZstd returns its encoder to zstdEncoders on Close.
type pooledZstd struct {
	enc *zstd.Encoder
}

func (p *pooledZstd) Write(b []byte) (int, error) {
	if p.enc == nil {
		return 0, ErrClosed
	}
	return p.enc.Write(b)
}

// Close flushes the stream and gives the encoder back; a second Close does
// nothing.
func (p *pooledZstd) Close() error {
	if p.enc == nil {
		return nil
	}
	err := p.enc.Close()
	p.enc.Reset(nil)
	zstdEncoders.Put(p.enc)
	p.enc = nil
	return err
}

// zstdReadCloser releases the decoder's goroutines on Close.
type zstdReadCloser struct{ d *zstd.Decoder }

func (z zstdReadCloser) Read(p []byte) (int, error) { return z.d.Read(p) }
func (z zstdReadCloser) Close() error               { z.d.Close(); return nil }

// newDecompressor returns a reader of the uncompressed bytes of r.
func newDecompressor(compression string, r io.Reader) (io.ReadCloser, error) {
	switch compression {
	case CompressionZstd:
		d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxWindow(1<<30))
		if err != nil {
			return nil, fmt.Errorf("zstd reader: %w", err)
		}
		return zstdReadCloser{d}, nil
	case CompressionXz:
		d, err := xz.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("xz reader: %w", err)
		}
		return io.NopCloser(d), nil
	case CompressionNone:
		return io.NopCloser(r), nil
	}
	return nil, fmt.Errorf("%w: %q", ErrBadCompression, compression)
}
