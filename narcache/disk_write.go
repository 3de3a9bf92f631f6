package narcache

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"github.com/drvmesh/drvmesh/store"
)

// copyBufSize is the buffer for streaming nar bytes.
const copyBufSize = 1 << 20

// NarWriter receives the bytes of one nar file and stores it only if they
// verify: Commit checks the FileHash and FileSize, decompresses and checks
// the NAR strictly (store.CheckNar) against NarHash and NarSize, then
// renames the temp file into place. Abort (or a failed Commit) deletes the
// temp file; a half-written file is never visible under its final name.
type NarWriter struct {
	d      *Disk
	want   File
	tmp    *os.File
	buf    *bufio.Writer
	fh     hash.Hash
	n      int64
	pipe   *chunkPipe
	result chan checkResult
	err    error
	done   bool
}

// checkResult is what the verifying goroutine found.
type checkResult struct {
	narHash store.Hash
	narSize int64
	err     error
}

// Create starts a verified write of the file want describes. want must
// name the Compression and FileHash; FileSize, NarHash and NarSize are
// checked when set.
func (d *Disk) Create(want File) (*NarWriter, error) {
	if err := checkCompression(want.Compression); err != nil {
		return nil, err
	}
	if want.FileHash.Algo != store.SHA256 || len(want.FileHash.Digest) != sha256.Size {
		return nil, fmt.Errorf("create nar: file hash %q: %w", want.FileHash, store.ErrBadHash)
	}
	tmp, err := os.CreateTemp(d.dir, tmpPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("create temp nar: %w", err)
	}
	w := &NarWriter{d: d, want: want, tmp: tmp, buf: bufio.NewWriterSize(tmp, copyBufSize),
		fh: sha256.New(), pipe: newChunkPipe(16), result: make(chan checkResult, 1)}
	go w.verify()
	return w, nil
}

// verify decompresses the queued bytes and checks the NAR.
func (w *NarWriter) verify() {
	var res checkResult
	dec, err := newDecompressor(w.want.Compression, w.pipe)
	if err == nil {
		res.narHash, res.narSize, res.err = checkNarExact(dec)
		dec.Close()
	} else {
		res.err = err
	}
	if res.err != nil {
		if !errors.Is(res.err, ErrClosed) {
			res.err = fmt.Errorf("%w: %w", ErrCorrupt, res.err)
		}
		w.pipe.CloseRead(res.err)
	} else {
		// Swallow whatever follows the compressed stream so the writer
		// never blocks; the FileHash check rejects extra bytes.
		_, _ = io.Copy(io.Discard, w.pipe)
		w.pipe.CloseRead(nil)
	}
	w.result <- res
}

// Write stores p and queues it for verification. After the verifier has
// rejected the stream, Write returns its error.
func (w *NarWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.done {
		return 0, ErrClosed
	}
	if _, err := w.buf.Write(p); err != nil {
		w.err = fmt.Errorf("write temp nar: %w", err)
		return 0, w.err
	}
	w.fh.Write(p)
	w.n += int64(len(p))
	if _, err := w.pipe.Write(p); err != nil {
		w.err = err
		return 0, err
	}
	return len(p), nil
}

// Commit verifies what was written and, if it all checks, makes the file
// visible under its final name. On failure nothing is kept.
func (w *NarWriter) Commit() (File, error) {
	if w.done {
		return File{}, ErrClosed
	}
	w.done = true
	w.pipe.CloseWrite()
	res := <-w.result
	f, err := w.finish(res)
	if err != nil {
		w.discard()
		return File{}, err
	}
	return f, nil
}

// finish checks the hashes and renames the temp file into place.
func (w *NarWriter) finish(res checkResult) (File, error) {
	if w.err != nil && res.err == nil {
		return File{}, w.err
	}
	if res.err != nil {
		return File{}, fmt.Errorf("verify nar: %w", res.err)
	}
	got := File{Compression: w.want.Compression, FileHash: hashOf(w.fh.Sum(nil)),
		FileSize: w.n, NarHash: res.narHash, NarSize: res.narSize}
	if err := checkAgainst(w.want, got); err != nil {
		return File{}, err
	}
	if err := w.buf.Flush(); err != nil {
		return File{}, fmt.Errorf("write temp nar: %w", err)
	}
	return w.d.place(w.tmp, got)
}

// Abort discards everything written. It is safe after Commit.
func (w *NarWriter) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.pipe.CloseRead(ErrClosed)
	w.pipe.CloseWrite()
	<-w.result
	w.discard()
}

func (w *NarWriter) discard() {
	w.tmp.Close()
	os.Remove(w.tmp.Name())
}

// checkAgainst compares what was received with what was expected.
func checkAgainst(want, got File) error {
	if !want.FileHash.IsZero() && !want.FileHash.Equal(got.FileHash) {
		return fmt.Errorf("%w: file hash is %s, want %s", ErrHashMismatch, got.FileHash, want.FileHash)
	}
	if want.FileSize != 0 && want.FileSize != got.FileSize {
		return fmt.Errorf("%w: file size is %d, want %d", ErrHashMismatch, got.FileSize, want.FileSize)
	}
	if !want.NarHash.IsZero() && !want.NarHash.Equal(got.NarHash) {
		return fmt.Errorf("%w: nar hash is %s, want %s", ErrHashMismatch, got.NarHash, want.NarHash)
	}
	if want.NarSize != 0 && want.NarSize != got.NarSize {
		return fmt.Errorf("%w: nar size is %d, want %d", ErrHashMismatch, got.NarSize, want.NarSize)
	}
	return nil
}

// place syncs and closes tmp and renames it to the file's final name.
func (d *Disk) place(tmp *os.File, f File) (File, error) {
	if err := tmp.Sync(); err != nil {
		return File{}, fmt.Errorf("sync nar: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return File{}, fmt.Errorf("close nar: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return File{}, fmt.Errorf("chmod nar: %w", err)
	}
	final := filepath.Join(d.dir, f.Key()+extension(f.Compression))
	if err := os.Rename(tmp.Name(), final); err != nil {
		return File{}, fmt.Errorf("rename nar: %w", err)
	}
	d.add(f, final)
	if _, err := d.Evict(); err != nil {
		d.log.Warn("evict after write", "err", err)
	}
	return f, nil
}

// Put stores the file want describes from r, verified as for Create.
func (d *Disk) Put(ctx context.Context, want File, r io.Reader) (File, error) {
	w, err := d.Create(want)
	if err != nil {
		return File{}, err
	}
	if _, err := copyCtx(ctx, w, r); err != nil {
		verr := w.err
		w.Abort()
		if verr != nil && errors.Is(err, verr) {
			return File{}, fmt.Errorf("verify nar: %w", err)
		}
		return File{}, fmt.Errorf("receive nar: %w", err)
	}
	return w.Commit()
}

// checkNarExact runs store.CheckNar and then requires the stream to end
// exactly where the NAR does.
func checkNarExact(r io.Reader) (store.Hash, int64, error) {
	cr := &countReader{r: r}
	h, n, err := store.CheckNar(cr)
	if err != nil {
		return store.Hash{}, 0, err
	}
	rest, err := io.Copy(io.Discard, cr)
	if err != nil {
		return store.Hash{}, 0, fmt.Errorf("read after nar: %w", err)
	}
	if rest > 0 || cr.n != n {
		return store.Hash{}, 0, fmt.Errorf("%w: %d bytes after a %d-byte nar", ErrTrailingData, cr.n-n, n)
	}
	return h, n, nil
}

// countReader counts the bytes read through it.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// copyCtx copies src to dst with a large buffer, stopping when ctx ends.
func copyCtx(ctx context.Context, dst io.Writer, src io.Reader) (int64, error) {
	buf := make([]byte, copyBufSize)
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, rerr := src.Read(buf)
		if n > 0 {
			if _, err := dst.Write(buf[:n]); err != nil {
				return total, err
			}
			total += int64(n)
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}
