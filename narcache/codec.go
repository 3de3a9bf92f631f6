package narcache

import (
	"fmt"
	"io"

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
		enc, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault),
			zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(8<<20))
		if err != nil {
			return nil, fmt.Errorf("zstd writer: %w", err)
		}
		return enc, nil
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
