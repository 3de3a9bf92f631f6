package consensus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// txn is one write (or read) transaction over the state buckets; it keeps
// the secondary indexes, counters and event queue consistent with the
// primary records.
type txn struct {
	tx *bolt.Tx
	b  [bkMismatches + 1]*bolt.Bucket

	// Counters kept in memory during a write transaction and written to
	// meta by flush: per-state count changes and the event sequence.
	counts   [6]int64
	eventSeq uint64 // last sequence number handed out; 0 until loaded

	// lastBuild is the greatest build key, once loaded: a key above it is
	// new without a lookup (ids mostly grow with time).
	lastBuild   [16]byte
	lastBuildOK bool

	// ch records what the transaction changes for open change feeds;
	// nil when none is open.
	ch *changeSet

	kbuf  []byte // scratch for keys: bbolt copies keys on Put
	vbuf  []byte // scratch for encoding values before keep
	arena []byte // values live until commit; carved from shared chunks
}

// key returns parts joined by 0 bytes in the scratch buffer, valid until
// the next call.
func (t *txn) key(parts ...[]byte) []byte {
	t.kbuf = t.kbuf[:0]
	for i, p := range parts {
		if i > 0 {
			t.kbuf = append(t.kbuf, 0)
		}
		t.kbuf = append(t.kbuf, p...)
	}
	return t.kbuf
}

// stateKey returns state byte + build key in the scratch buffer.
func (t *txn) stateKey(state string, k []byte) []byte {
	t.kbuf = append(append(t.kbuf[:0], stateCode(state)), k...)
	return t.kbuf
}

// keep copies a value into the transaction's arena (bbolt keeps value
// slices until commit), saving one allocation per record.
func (t *txn) keep(v []byte) []byte {
	if len(v) > 4096 {
		return bytes.Clone(v)
	}
	if cap(t.arena)-len(t.arena) < len(v) {
		t.arena = make([]byte, 0, 64<<10)
	}
	n := len(t.arena)
	t.arena = append(t.arena, v...)
	return t.arena[n:len(t.arena):len(t.arena)]
}

// buildExists reports whether build key k is stored.
func (t *txn) buildExists(k []byte) bool {
	if !t.lastBuildOK {
		if lk, _ := t.b[bkBuilds].Cursor().Last(); lk != nil {
			copy(t.lastBuild[:], lk)
		}
		t.lastBuildOK = true
	}
	if bytes.Compare(k, t.lastBuild[:]) > 0 {
		return false
	}
	return t.b[bkBuilds].Get(k) != nil
}

func newTxn(tx *bolt.Tx) *txn {
	t := &txn{tx: tx}
	for i := range t.b {
		t.b[i] = tx.Bucket(buckets[i])
	}
	if tx.Writable() {
		// Build keys and event sequence numbers only grow: pack pages full.
		t.b[bkBuilds].FillPercent = 0.95
		t.b[bkEvents].FillPercent = 0.95
	}
	return t
}

var empty = []byte{}

func stateCode(s string) byte {
	return byte(slices.Index(States, s))
}

func join(parts ...[]byte) []byte {
	return bytes.Join(parts, []byte{0})
}

// badRecord is what put panics with when bbolt refuses a key or value
// for its size or emptiness, which command content decides (a 40 KB node
// name, an empty tag): exec recovers it into an ErrBadCommand error value.
// bbolt checks these before it changes anything.
type badRecord struct{ err error }

func (t *txn) put(bk int, k, v []byte) {
	if err := t.b[bk].Put(k, v); err != nil {
		if errors.Is(err, bolterrors.ErrKeyRequired) || errors.Is(err, bolterrors.ErrKeyTooLarge) ||
			errors.Is(err, bolterrors.ErrValueTooLarge) {
			panic(badRecord{fmt.Errorf("%s record of %d-byte key, %d-byte value: %w (%w)", buckets[bk], len(k), len(v), ErrBadCommand, err)})
		}
		panic(fmt.Sprintf("consensus: put %s: %v", buckets[bk], err))
	}
}

func (t *txn) del(bk int, k []byte) {
	if err := t.b[bk].Delete(k); err != nil {
		panic(fmt.Sprintf("consensus: delete %s: %v", buckets[bk], err))
	}
}

func (t *txn) putJSON(bk int, k []byte, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("consensus: encode %s record: %v", buckets[bk], err))
	}
	t.put(bk, k, data)
}

// getBuild returns the build or ErrNotFound; a stored record that does not
// decode panics.
func (t *txn) getBuild(id string) (*Build, []byte, error) {
	k, err := buildKey(id)
	if err != nil {
		return nil, nil, err
	}
	data := t.b[bkBuilds].Get(k)
	if data == nil {
		return nil, k, fmt.Errorf("build %s: %w", id, ErrNotFound)
	}
	b, err := decodeBuild(data)
	if err != nil {
		panic(fmt.Sprintf("consensus: stored build %s: %v", id, err))
	}
	return b, k, nil
}

// putBuild writes b, updating the indexes from old (nil for a new build).
func (t *txn) putBuild(k []byte, old, b *Build) {
	if old == nil || old.State != b.State {
		if old != nil {
			t.del(bkByState, t.stateKey(old.State, k))
			t.addCount(old.State, -1)
		}
		t.put(bkByState, t.stateKey(b.State, k), empty)
		t.addCount(b.State, 1)
	}
	if old == nil {
		t.kbuf = append(append(append(t.kbuf[:0], b.Derivation...), 0), k...)
		t.put(bkByDrv, t.kbuf, empty)
		for tk, tv := range b.Tags {
			t.kbuf = append(append(append(append(t.kbuf[:0], tk...), '='), tv...), 0)
			t.put(bkByTag, append(t.kbuf, k...), empty)
		}
		if t.lastBuildOK && bytes.Compare(k, t.lastBuild[:]) > 0 {
			copy(t.lastBuild[:], k)
		}
	}
	var oldWait []string
	if old != nil {
		oldWait = old.WaitingFor
	}
	if !slices.Equal(oldWait, b.WaitingFor) {
		for _, p := range oldWait {
			t.del(bkWaiting, t.key([]byte(p), k))
		}
		for _, p := range b.WaitingFor {
			t.put(bkWaiting, t.key([]byte(p), k), empty)
		}
	}
	t.vbuf = appendBuild(t.vbuf[:0], b)
	t.put(bkBuilds, k, t.keep(t.vbuf))
	t.ch.build(b.ID)
}

func (t *txn) addCount(state string, d int64) {
	t.counts[stateCode(state)] += d
}

// addEvent appends an event of type typ for build key k.
func (t *txn) addEvent(typ string, k []byte, at time.Time) {
	if t.eventSeq == 0 {
		t.eventSeq = u64(t.b[bkMeta].Get([]byte("event_seq")))
	}
	t.eventSeq++
	t.vbuf = appendEvent(t.vbuf[:0], typ, k, at)
	t.put(bkEvents, u64b(t.eventSeq), t.keep(t.vbuf))
}

// flush writes the counters kept in memory to meta; call it before commit.
func (t *txn) flush() {
	for i, d := range t.counts {
		if d == 0 {
			continue
		}
		key := []byte("count/" + States[i])
		t.put(bkMeta, key, u64b(uint64(int64(u64(t.b[bkMeta].Get(key)))+d)))
		t.counts[i] = 0
	}
	if t.eventSeq != 0 {
		t.put(bkMeta, []byte("event_seq"), u64b(t.eventSeq))
	}
}

func (t *txn) settings() Settings {
	var s Settings
	if data := t.b[bkMeta].Get([]byte("settings")); data != nil {
		if err := json.Unmarshal(data, &s); err != nil {
			panic(fmt.Sprintf("consensus: stored settings: %v", err))
		}
	}
	return s
}

// getDrv returns a derivation's record, or nil.
func (t *txn) getDrv(path string) *Drv {
	data := t.b[bkDrvs].Get([]byte(path))
	if data == nil {
		return nil
	}
	var d Drv
	if err := json.Unmarshal(data, &d); err != nil {
		panic(fmt.Sprintf("consensus: stored derivation %s: %v", path, err))
	}
	return &d
}

// getMismatch returns a store path's mismatch record, or nil.
func (t *txn) getMismatch(path string) *Mismatch {
	data := t.b[bkMismatches].Get([]byte(path))
	if data == nil {
		return nil
	}
	var m Mismatch
	if err := json.Unmarshal(data, &m); err != nil {
		panic(fmt.Sprintf("consensus: stored mismatch %s: %v", path, err))
	}
	return &m
}

func (t *txn) getNar(hash string) *NarInfo {
	data := t.b[bkNars].Get([]byte(hash))
	if data == nil {
		return nil
	}
	n, err := decodeNarInfo(data)
	if err != nil {
		panic(fmt.Sprintf("consensus: stored nar %s: %v", hash, err))
	}
	return n
}

// putNar writes n, updating the holder index from old (nil if new).
func (t *txn) putNar(hash string, old, n *NarInfo) {
	var oldHolders []string
	if old != nil {
		oldHolders = old.Holders
	}
	for _, h := range oldHolders {
		if !slices.Contains(n.Holders, h) {
			t.del(bkHolders, join([]byte(h), []byte(hash)))
		}
	}
	for _, h := range n.Holders {
		if !slices.Contains(oldHolders, h) {
			t.put(bkHolders, join([]byte(h), []byte(hash)), empty)
		}
	}
	if old != nil {
		for _, f := range old.Files {
			if !slices.ContainsFunc(n.Files, func(x NarFile) bool { return x.FileHash == f.FileHash }) {
				t.del(bkByFile, []byte(fileKey(f.FileHash)))
			}
		}
	}
	for _, f := range n.Files {
		t.put(bkByFile, []byte(fileKey(f.FileHash)), []byte(hash))
	}
	t.put(bkNars, []byte(hash), encodeNarInfo(n))
	t.ch.nar(hash)
}

// fileKey is the nix32 digest of a "sha256:<nix32>" file hash, the name
// nar files go by.
func fileKey(fileHash string) string {
	if i := strings.IndexByte(fileHash, ':'); i >= 0 {
		return fileHash[i+1:]
	}
	return fileHash
}

// pathPresent reports whether a store path's nar is recorded with at least
// one holder.
func (t *txn) pathPresent(storePath string) bool {
	h, err := HashPart(storePath)
	if err != nil {
		return false
	}
	n := t.getNar(h)
	return n != nil && len(n.Holders) > 0
}

// prefixKeys returns the keys of bucket bk that start with prefix.
func (t *txn) prefixKeys(bk int, prefix []byte) [][]byte {
	var out [][]byte
	c := t.b[bk].Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		out = append(out, bytes.Clone(k))
	}
	return out
}
