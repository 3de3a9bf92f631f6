package narcache

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/drvmesh/drvmesh/store"
)

// Holders tells how many other nodes of the mesh hold a nar file. The node
// implements it from the replicated index; eviction consults it so that
// the last copies of a nar are never dropped.
type Holders interface {
	// OtherHolders returns the number of nodes other than this one that
	// hold the file with this key (nix32 FileHash).
	OtherHolders(key string) int
}

// DiskConfig configures a Disk. The zero value of every field but Dir is
// usable.
type DiskConfig struct {
	// Dir is the data directory; nars live in Dir/nar.
	Dir string
	// Compressions are the forms Ingest writes, each compressed once while
	// the NAR streams in. Default: zstd only. Allowed: zstd, xz, none.
	// Uncompressed NARs are served from any form by decompressing on the
	// fly, so "none" is rarely worth its disk space.
	Compressions []string
	// Quota is the most bytes of nar files to keep; 0 means no limit.
	Quota int64
	// MinOtherHolders is how many other nodes must hold a file before
	// eviction may drop it. Default 1; values below 1 are raised to 1.
	MinOtherHolders int
	// Holders answers how many other nodes hold a file. Nil means none do,
	// so nothing is ever evicted.
	Holders Holders
	// TouchInterval is how stale a file's persisted mtime may grow before
	// a read refreshes it. Default one hour.
	TouchInterval time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Disk is a content-addressed store of nar files on local disk. Files are
// named by FileHash, written atomically and verified before they become
// visible. It is safe for concurrent use.
type Disk struct {
	cfg DiskConfig
	dir string
	log *slog.Logger

	mu    sync.RWMutex
	files map[string]*diskEntry
	usage int64

	evictMu sync.Mutex
}

// diskEntry is one stored file and when it was last read.
type diskEntry struct {
	file    File
	path    string
	lastUse atomic.Int64 // unix nanoseconds
	touched atomic.Int64 // unix nanoseconds of the persisted mtime
}

// tmpPrefix marks files being written; NewDisk removes leftovers.
const tmpPrefix = ".tmp-"

// NewDisk opens (creating if needed) the nar directory under cfg.Dir, drops
// half-written leftovers and indexes the files present, taking each file's
// mtime as its last use.
func NewDisk(cfg DiskConfig) (*Disk, error) {
	if cfg.Dir == "" {
		return nil, errors.New("disk: empty data dir")
	}
	if len(cfg.Compressions) == 0 {
		cfg.Compressions = []string{CompressionZstd}
	}
	for _, c := range cfg.Compressions {
		if err := checkCompression(c); err != nil {
			return nil, fmt.Errorf("disk config: %w", err)
		}
	}
	if cfg.MinOtherHolders < 1 {
		cfg.MinOtherHolders = 1
	}
	if cfg.TouchInterval <= 0 {
		cfg.TouchInterval = time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	d := &Disk{cfg: cfg, dir: filepath.Join(cfg.Dir, "nar"), log: cfg.Logger,
		files: make(map[string]*diskEntry)}
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return nil, fmt.Errorf("create nar dir: %w", err)
	}
	ents, err := os.ReadDir(d.dir)
	if err != nil {
		return nil, fmt.Errorf("read nar dir: %w", err)
	}
	for _, de := range ents {
		name := de.Name()
		path := filepath.Join(d.dir, name)
		if strings.HasPrefix(name, tmpPrefix) {
			if err := os.Remove(path); err != nil {
				return nil, fmt.Errorf("remove leftover %s: %w", name, err)
			}
			continue
		}
		key, comp, ok := parseFileName(name)
		if !ok || !de.Type().IsRegular() {
			continue
		}
		info, err := de.Info()
		if err != nil {
			return nil, fmt.Errorf("stat %s: %w", name, err)
		}
		h, _ := ParseFileKey(key)
		f := File{Compression: comp, FileHash: h, FileSize: info.Size()}
		if comp == CompressionNone {
			f.NarHash, f.NarSize = h, info.Size()
		}
		e := &diskEntry{file: f, path: path}
		e.lastUse.Store(info.ModTime().UnixNano())
		e.touched.Store(info.ModTime().UnixNano())
		d.files[key] = e
		d.usage += info.Size()
	}
	return d, nil
}

// Dir is the directory that holds the nar files.
func (d *Disk) Dir() string { return d.dir }

// Compressions are the forms Ingest writes.
func (d *Disk) Compressions() []string { return append([]string(nil), d.cfg.Compressions...) }

// Stat returns the stored file with this key (nix32 FileHash).
func (d *Disk) Stat(key string) (File, bool) {
	d.mu.RLock()
	e := d.files[key]
	d.mu.RUnlock()
	if e == nil {
		return File{}, false
	}
	return e.file, true
}

// Has reports whether the file with this key is stored.
func (d *Disk) Has(key string) bool {
	_, ok := d.Stat(key)
	return ok
}

// List returns every stored file, in no particular order.
func (d *Disk) List() []File {
	d.mu.RLock()
	defer d.mu.RUnlock()
	out := make([]File, 0, len(d.files))
	for _, e := range d.files {
		out = append(out, e.file)
	}
	return out
}

// Usage is the total size of the stored files.
func (d *Disk) Usage() int64 {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.usage
}

// Open opens the stored file with this key for reading and marks it used.
// The caller closes the file. It fails with ErrNotFound when the file is
// not stored (or vanished under an eviction).
func (d *Disk) Open(key string) (*os.File, File, error) {
	d.mu.RLock()
	e := d.files[key]
	d.mu.RUnlock()
	if e == nil {
		return nil, File{}, fmt.Errorf("open %s: %w", key, ErrNotFound)
	}
	fh, err := os.Open(e.path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, File{}, fmt.Errorf("open %s: %w", key, ErrNotFound)
		}
		return nil, File{}, fmt.Errorf("open nar file: %w", err)
	}
	d.touch(e)
	return fh, e.file, nil
}

// OpenNar opens the uncompressed NAR of the stored file with this key,
// decompressing while the caller reads.
func (d *Disk) OpenNar(key string) (io.ReadCloser, File, error) {
	fh, f, err := d.Open(key)
	if err != nil {
		return nil, File{}, err
	}
	dec, err := newDecompressor(f.Compression, fh)
	if err != nil {
		fh.Close()
		return nil, File{}, err
	}
	return &narReader{ReadCloser: dec, file: fh}, f, nil
}

// narReader closes both the decompressor and the file under it.
type narReader struct {
	io.ReadCloser
	file *os.File
}

func (r *narReader) Close() error {
	r.ReadCloser.Close()
	return r.file.Close()
}

// touch records a use, persisting it as the file mtime at most once per
// TouchInterval so that a restart keeps a rough LRU order.
func (d *Disk) touch(e *diskEntry) {
	now := time.Now()
	e.lastUse.Store(now.UnixNano())
	if now.UnixNano()-e.touched.Load() < int64(d.cfg.TouchInterval) {
		return
	}
	e.touched.Store(now.UnixNano())
	if err := os.Chtimes(e.path, now, now); err != nil && !errors.Is(err, os.ErrNotExist) {
		d.log.Warn("persist nar last use", "file", e.file.Key(), "err", err)
	}
}

// Remove deletes the stored file with this key. Removing a missing file is
// not an error.
func (d *Disk) Remove(key string) error {
	d.mu.Lock()
	e := d.files[key]
	if e != nil {
		delete(d.files, key)
		d.usage -= e.file.FileSize
	}
	d.mu.Unlock()
	if e == nil {
		return nil
	}
	if err := os.Remove(e.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove nar file: %w", err)
	}
	return nil
}

// add registers a file that was just renamed into place.
func (d *Disk) add(f File, path string) {
	e := &diskEntry{file: f, path: path}
	now := time.Now().UnixNano()
	e.lastUse.Store(now)
	e.touched.Store(now)
	d.mu.Lock()
	if old := d.files[f.Key()]; old != nil {
		d.usage -= old.file.FileSize
		if old.file.NarSize != 0 && f.NarSize == 0 {
			e.file.NarHash, e.file.NarSize = old.file.NarHash, old.file.NarSize
		}
	}
	d.files[f.Key()] = e
	d.usage += f.FileSize
	d.mu.Unlock()
}

// Evict drops least recently used files until usage is within the quota,
// skipping every file that fewer than MinOtherHolders other nodes hold. It
// returns the bytes freed. Usage may stay above the quota when only last
// copies remain; that is logged, not an error.
func (d *Disk) Evict() (int64, error) {
	if d.cfg.Quota <= 0 {
		return 0, nil
	}
	d.evictMu.Lock()
	defer d.evictMu.Unlock()
	if d.Usage() <= d.cfg.Quota {
		return 0, nil
	}
	type cand struct {
		key     string
		lastUse int64
	}
	d.mu.RLock()
	cands := make([]cand, 0, len(d.files))
	for k, e := range d.files {
		cands = append(cands, cand{k, e.lastUse.Load()})
	}
	d.mu.RUnlock()
	sort.Slice(cands, func(i, j int) bool { return cands[i].lastUse < cands[j].lastUse })
	var freed int64
	for _, c := range cands {
		if d.Usage() <= d.cfg.Quota {
			break
		}
		if d.cfg.Holders == nil || d.cfg.Holders.OtherHolders(c.key) < d.cfg.MinOtherHolders {
			continue
		}
		f, ok := d.Stat(c.key)
		if !ok {
			continue
		}
		if err := d.Remove(c.key); err != nil {
			return freed, fmt.Errorf("evict: %w", err)
		}
		freed += f.FileSize
		d.log.Info("evicted nar", "file", c.key, "size", f.FileSize)
	}
	if u := d.Usage(); u > d.cfg.Quota {
		d.log.Warn("nar store over quota; remaining files have too few other holders",
			"usage", u, "quota", d.cfg.Quota)
	}
	return freed, nil
}

// hashOf is a helper for tests and callers holding a raw sha256 digest.
func hashOf(sum []byte) store.Hash { return store.Hash{Algo: store.SHA256, Digest: sum} }
