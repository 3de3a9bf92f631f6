package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// narCheckBufSize is the read-ahead buffer of CheckNar, sized for hashing.
const narCheckBufSize = 1 << 20

// narCheckBufs keeps CheckNar's read buffers: checking a small NAR must not
// cost a large allocation.
var narCheckBufs = sync.Pool{New: func() any { b := make([]byte, narCheckBufSize); return &b }}

// CheckNar reads a whole NAR strictly (see NarReader), including checking
// that nothing follows it, and returns its SHA-256 and size. It is how a
// received NAR is verified against a narinfo's NarHash and NarSize.
func CheckNar(r io.Reader) (narHash Hash, narSize int64, err error) {
	buf := narCheckBufs.Get().(*[]byte)
	defer narCheckBufs.Put(buf)
	nr := &NarReader{r: r, buf: *buf, hash: sha256.New()}
	for {
		_, err := nr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Hash{}, 0, err
		}
	}
	return Hash{Algo: SHA256, Digest: nr.hash.Sum(nil)}, nr.off, nil
}

// NarListing is the JSON listing of a NAR that binary caches serve as
// <hash>.ls (docs/formats.md §5.1): {"version":1,"root":NODE}.
type NarListing struct {
	Version int      `json:"version"`
	Root    *NarNode `json:"root"`
}

// NarNode is one node of a NarListing. Size, Executable and NarOffset (the
// offset of the contents in the NAR) are for regular files, Target for
// symlinks, Entries for directories.
type NarNode struct {
	Type       NarType             `json:"type"`
	Size       int64               `json:"size"`
	Executable bool                `json:"executable"`
	NarOffset  int64               `json:"narOffset"`
	Target     string              `json:"target"`
	Entries    map[string]*NarNode `json:"entries"`
}

// ListNar reads a whole NAR strictly and returns its listing.
func ListNar(r io.Reader) (*NarListing, error) {
	nr := NewNarReader(r)
	l := &NarListing{Version: 1}
	var dirs []*NarNode // dirs[i] holds the nodes at depth i+1
	for {
		h, err := nr.Next()
		if errors.Is(err, io.EOF) {
			return l, nil
		}
		if err != nil {
			return nil, err
		}
		n := &NarNode{Type: h.Type}
		switch h.Type {
		case NarRegular:
			n.Size, n.Executable, n.NarOffset = h.Size, h.Executable, h.offset
		case NarSymlink:
			n.Target = h.LinkTarget
		case NarDirectory:
			n.Entries = map[string]*NarNode{}
		}
		if h.Path == "" {
			l.Root = n
		} else {
			depth := strings.Count(h.Path, "/") + 1
			dirs = dirs[:depth]
			dirs[depth-1].Entries[h.Path[strings.LastIndexByte(h.Path, '/')+1:]] = n
		}
		if h.Type == NarDirectory {
			dirs = append(dirs, n)
		}
	}
}

// MarshalJSON writes the node as Nix does: only the fields of its type, in
// Nix's key order, entries sorted by name, without HTML escaping.
func (n *NarNode) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	if err := n.appendJSON(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func (n *NarNode) appendJSON(b *bytes.Buffer) error {
	b.WriteString(`{"type":`)
	writeJSONString(b, string(n.Type))
	switch n.Type {
	case NarRegular:
		b.WriteString(`,"size":` + strconv.FormatInt(n.Size, 10))
		if n.Executable {
			b.WriteString(`,"executable":true`)
		}
		b.WriteString(`,"narOffset":` + strconv.FormatInt(n.NarOffset, 10))
	case NarSymlink:
		b.WriteString(`,"target":`)
		writeJSONString(b, n.Target)
	case NarDirectory:
		b.WriteString(`,"entries":{`)
		names := make([]string, 0, len(n.Entries))
		for name := range n.Entries {
			names = append(names, name)
		}
		sort.Strings(names)
		for i, name := range names {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONString(b, name)
			b.WriteByte(':')
			if err := n.Entries[name].appendJSON(b); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	default:
		return fmt.Errorf("nar listing: unknown node type %q: %w", n.Type, ErrBadNar)
	}
	b.WriteByte('}')
	return nil
}

func writeJSONString(b *bytes.Buffer, s string) {
	e := json.NewEncoder(b)
	e.SetEscapeHTML(false)
	_ = e.Encode(s)         // a string always encodes
	b.Truncate(b.Len() - 1) // Encode adds a newline
}
