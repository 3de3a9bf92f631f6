package narcache

import (
	"container/list"
	"slices"
	"strconv"
	"sync"

	"github.com/drvmesh/drvmesh/store"
)

// Entry is what the replicated index knows about one store path.
type Entry struct {
	// Info holds StorePath, NarHash, NarSize, References, Deriver, System,
	// CA and any stored Sigs. Its URL/Compression/FileHash/FileSize are
	// ignored: the handler fills them from Files. It is never modified.
	Info *store.NarInfo
	// Files are the forms of the NAR the mesh holds.
	Files []File
	// Version changes whenever the entry changes (a raft index will do);
	// rendered narinfos are cached by hash part and version.
	Version uint64
}

// Index is the read view of the replicated mesh index that the handler
// needs; the node implements it.
type Index interface {
	// Lookup returns the entry of the store path with this hash part.
	Lookup(hashPart string) (Entry, bool)
	// Holders returns the other nodes that hold the file with this key
	// (nix32 FileHash), best first.
	Holders(key string) []Holder
}

// compressionRank orders the forms a narinfo advertises: zstd is small and
// fast to decode, xz is what old clients know, none is the largest.
func compressionRank(c string) int {
	switch c {
	case CompressionZstd:
		return 0
	case CompressionXz:
		return 1
	default:
		return 2
	}
}

// chooseFile picks the file a narinfo names: a local one if any, then by
// compression preference.
func chooseFile(d *Disk, files []File) (File, bool) {
	best, found, bestLocal := File{}, false, false
	for _, f := range files {
		if checkCompression(f.Compression) != nil {
			continue
		}
		local := d.Has(f.Key())
		better := !found || (local && !bestLocal) ||
			(local == bestLocal && compressionRank(f.Compression) < compressionRank(best.Compression))
		if better {
			best, found, bestLocal = f, true, local
		}
	}
	return best, found
}

// renderNarInfo renders the Nix narinfo of e naming file f, adding a
// signature by key when given.
func renderNarInfo(e Entry, f File, key *store.SecretKey) []byte {
	ni := *e.Info
	ni.Sigs = slices.Clone(e.Info.Sigs)
	ni.URL = f.URL()
	ni.Compression = f.Compression
	ni.FileHash = f.FileHash
	ni.FileSize = f.FileSize
	ni.Files, ni.Signature, ni.Raw = nil, "", nil
	if key != nil {
		key.SignNarInfo(&ni, ni.StoreDir())
	}
	return ni.Bytes()
}

// rendered is a cached narinfo response.
type rendered struct {
	body   []byte
	length []string // Content-Length header value
}

// narInfoKey names a cached rendering.
type narInfoKey struct {
	hash    string
	version uint64
}

// narInfoCache is a small LRU of rendered narinfos.
type narInfoCache struct {
	mu    sync.Mutex
	max   int
	ll    *list.List
	items map[narInfoKey]*list.Element
}

type cacheItem struct {
	key narInfoKey
	val *rendered
}

func newNarInfoCache(max int) *narInfoCache {
	return &narInfoCache{max: max, ll: list.New(), items: make(map[narInfoKey]*list.Element, max)}
}

func (c *narInfoCache) get(k narInfoKey) *rendered {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		c.ll.MoveToFront(el)
		return el.Value.(*cacheItem).val
	}
	return nil
}

func (c *narInfoCache) put(k narInfoKey, body []byte) *rendered {
	r := &rendered{body: body, length: []string{strconv.Itoa(len(body))}}
	if c.max <= 0 {
		return r
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		el.Value.(*cacheItem).val = r
		c.ll.MoveToFront(el)
		return r
	}
	c.items[k] = c.ll.PushFront(&cacheItem{key: k, val: r})
	for c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.items, old.Value.(*cacheItem).key)
	}
	return r
}
