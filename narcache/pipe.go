package narcache

import (
	"io"
	"sync"
)

// chunkPipe hands byte chunks from a writer goroutine to a reader goroutine
// through a small queue, so that the writer (network, disk, FileHash) and
// the reader (decompression, NAR check, NarHash) run in parallel. Unlike
// io.Pipe, a Write returns once its chunk is queued.
type chunkPipe struct {
	ch      chan []byte
	done    chan struct{}
	once    sync.Once
	err     error // set before done is closed
	cur     []byte
	wclosed bool
}

func newChunkPipe(depth int) *chunkPipe {
	return &chunkPipe{ch: make(chan []byte, depth), done: make(chan struct{})}
}

// Write queues a copy of p. It fails once the reader has stopped.
func (p *chunkPipe) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	c := make([]byte, len(b))
	copy(c, b)
	select {
	case p.ch <- c:
		return len(b), nil
	case <-p.done:
		return 0, p.err
	}
}

// CloseWrite marks the end of the stream; the reader then sees io.EOF.
func (p *chunkPipe) CloseWrite() {
	if !p.wclosed {
		p.wclosed = true
		close(p.ch)
	}
}

// Read returns queued bytes, or io.EOF after CloseWrite.
func (p *chunkPipe) Read(b []byte) (int, error) {
	for len(p.cur) == 0 {
		select {
		case c, ok := <-p.ch:
			if !ok {
				return 0, io.EOF
			}
			p.cur = c
		case <-p.done:
			return 0, p.err
		}
	}
	n := copy(b, p.cur)
	p.cur = p.cur[n:]
	return n, nil
}

// CloseRead stops the reader side; later Writes fail with err.
func (p *chunkPipe) CloseRead(err error) {
	if err == nil {
		err = io.ErrClosedPipe
	}
	p.once.Do(func() {
		p.err = err
		close(p.done)
	})
}
