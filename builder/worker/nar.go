package worker

import (
	"bufio"
	"fmt"
	"io"
)

// Bounds of the NAR parser: entry names and symlink targets, and the
// nesting of directories.
const (
	narMaxToken = 4096
	narMaxDepth = 256
)

// narCopier parses a NAR from the connection while copying its bytes to
// out. It checks the structure only (tokens, nesting, bounds): enough to
// find the NAR's end; whoever stores the NAR checks its hash.
type narCopier struct {
	c   *Conn
	out *bufio.Writer
	ww  writer
}

func (c *Conn) copyNAR(w io.Writer) error {
	n := &narCopier{c: c, out: bufio.NewWriterSize(w, ioChunk)}
	n.ww = writer{w: n.out}
	if err := n.expect("nix-archive-1"); err != nil {
		return err
	}
	if err := n.node(0); err != nil {
		return err
	}
	if err := n.out.Flush(); err != nil {
		return fmt.Errorf("write nar: %w", err)
	}
	return nil
}

// token reads one string of the NAR's structure and copies it.
func (n *narCopier) token() (string, error) {
	n.c.r.reset() // nothing of a NAR is kept: bound each token only
	s, err := n.c.r.str(narMaxToken)
	if err != nil {
		return "", err
	}
	n.ww.str(s)
	return s, nil
}

func (n *narCopier) expect(want string) error {
	got, err := n.token()
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("%w: nar: got %q, want %q", ErrProtocol, truncate(got), want)
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

func (n *narCopier) node(depth int) error {
	if depth > narMaxDepth {
		return fmt.Errorf("%w: nar nested deeper than %d", ErrProtocol, narMaxDepth)
	}
	if err := n.expect("("); err != nil {
		return err
	}
	if err := n.expect("type"); err != nil {
		return err
	}
	typ, err := n.token()
	if err != nil {
		return err
	}
	switch typ {
	case "regular":
		return n.regular()
	case "symlink":
		if err := n.expect("target"); err != nil {
			return err
		}
		if _, err := n.token(); err != nil {
			return err
		}
		return n.expect(")")
	case "directory":
		return n.directory(depth)
	}
	return fmt.Errorf("%w: nar node type %q", ErrProtocol, truncate(typ))
}

func (n *narCopier) regular() error {
	tok, err := n.token()
	if err != nil {
		return err
	}
	if tok == "executable" {
		if err := n.expect(""); err != nil {
			return err
		}
		if tok, err = n.token(); err != nil {
			return err
		}
	}
	if tok != "contents" {
		return fmt.Errorf("%w: nar: got %q, want contents", ErrProtocol, truncate(tok))
	}
	size, err := n.c.r.u64()
	if err != nil {
		return err
	}
	if size > 1<<62 {
		return fmt.Errorf("%w: nar file of %d bytes", ErrProtocol, size)
	}
	n.ww.u64(size)
	if _, err := io.CopyN(n.out, readerOnly{n.c.r.r}, int64(size)); err != nil {
		if ferr := n.out.Flush(); ferr != nil {
			return fmt.Errorf("write nar: %w", ferr)
		}
		return readErr(err)
	}
	if err := n.c.r.pad(size); err != nil {
		return err
	}
	if k := (8 - size%8) % 8; k > 0 {
		_, _ = n.out.Write(zeroPad[:k])
	}
	return n.expect(")")
}

func (n *narCopier) directory(depth int) error {
	for {
		tok, err := n.token()
		if err != nil {
			return err
		}
		switch tok {
		case ")":
			return nil
		case "entry":
		default:
			return fmt.Errorf("%w: nar: got %q in a directory", ErrProtocol, truncate(tok))
		}
		if err := n.expect("("); err != nil {
			return err
		}
		if err := n.expect("name"); err != nil {
			return err
		}
		if _, err := n.token(); err != nil {
			return err
		}
		if err := n.expect("node"); err != nil {
			return err
		}
		if err := n.node(depth + 1); err != nil {
			return err
		}
		if err := n.expect(")"); err != nil {
			return err
		}
	}
}

// readerOnly hides bufio.Reader's WriteTo, so that the copy goes through
// the bounded LimitReader of io.CopyN.
type readerOnly struct{ r io.Reader }

func (r readerOnly) Read(p []byte) (int, error) { return r.r.Read(p) }
