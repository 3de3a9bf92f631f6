package consensus

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// Snapshot format: the header "DRVMESH-FSM\n" and a version byte, then one
// record per bucket entry, buckets in their fixed order, keys ascending:
// [bucket type = index+1][uvarint key length][key][uvarint value length]
// [value], and a trailer [0xFF][uvarint record count].
const (
	snapMagic   = "DRVMESH-FSM\n"
	snapVersion = 1
	snapEnd     = 0xFF
	// restoreBatch records are written per bbolt transaction on restore.
	restoreBatch = 200_000
)

type fsmSnapshot struct {
	tx *bolt.Tx
}

// Snapshot opens a read transaction; Persist streams it while Apply goes on.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return nil, ErrClosed
	}
	tx, err := f.db.Begin(false)
	if err != nil {
		return nil, fmt.Errorf("begin snapshot: %w", err)
	}
	return &fsmSnapshot{tx: tx}, nil
}

// Persist writes the snapshot to sink.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := writeSnapshot(s.tx, sink); err != nil {
		sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("close snapshot: %w", err)
	}
	return nil
}

// Release ends the read transaction.
func (s *fsmSnapshot) Release() { s.tx.Rollback() }

func writeSnapshot(tx *bolt.Tx, w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	bw.WriteString(snapMagic)
	bw.WriteByte(snapVersion)
	var n uint64
	var lb [binary.MaxVarintLen64]byte
	for i, name := range buckets {
		c := tx.Bucket(name).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			bw.WriteByte(byte(i + 1))
			bw.Write(lb[:binary.PutUvarint(lb[:], uint64(len(k)))])
			bw.Write(k)
			bw.Write(lb[:binary.PutUvarint(lb[:], uint64(len(v)))])
			if _, err := bw.Write(v); err != nil {
				return err
			}
			n++
		}
	}
	bw.WriteByte(snapEnd)
	bw.Write(lb[:binary.PutUvarint(lb[:], n)])
	return bw.Flush()
}

// Restore builds a fresh state file from the snapshot and swaps it in for
// the current one.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	path := filepath.Join(f.dir, stateFile+".restore")
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove stale restore file: %w", err)
	}
	db, err := openState(path)
	if err != nil {
		return err
	}
	if err := readSnapshot(db, rc); err != nil {
		db.Close()
		os.Remove(path)
		return fmt.Errorf("restore snapshot: %w", err)
	}
	var applied uint64
	_ = db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(buckets[bkMeta]).Get(metaApplied); len(v) == 8 {
			applied = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	f.mu.Lock()
	if f.db != nil {
		f.db.Close()
	}
	err = os.Rename(path, filepath.Join(f.dir, stateFile))
	f.db = db
	f.mu.Unlock()
	if err != nil {
		return fmt.Errorf("swap restored state: %w", err)
	}
	if applied > f.applied.Load() {
		f.applied.Store(applied)
	}
	f.publish(nil, true)
	f.notify()
	return nil
}

func readSnapshot(db *bolt.DB, r io.Reader) error {
	br := bufio.NewReaderSize(r, 1<<20)
	head := make([]byte, len(snapMagic)+1)
	if _, err := io.ReadFull(br, head); err != nil || string(head[:len(snapMagic)]) != snapMagic {
		return fmt.Errorf("header: %w", ErrBadSnapshot)
	}
	if head[len(snapMagic)] != snapVersion {
		return fmt.Errorf("version %d: %w", head[len(snapMagic)], ErrBadSnapshot)
	}
	var n uint64
	for {
		tx, err := db.Begin(true)
		if err != nil {
			return err
		}
		done, err := readRecords(tx, br, &n)
		if err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

// readRecords puts up to restoreBatch records into tx; done is true once the
// trailer has been read and checked.
func readRecords(tx *bolt.Tx, br *bufio.Reader, n *uint64) (done bool, err error) {
	bks := make([]*bolt.Bucket, len(buckets))
	for i, name := range buckets {
		bks[i] = tx.Bucket(name)
		bks[i].FillPercent = 1.0 // keys arrive in order
	}
	bad := func(what string, err error) error {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("%s after %d records: %w (%w)", what, *n, ErrBadSnapshot, err)
	}
	var kbuf, arena []byte
	for range restoreBatch {
		if cap(arena)-len(arena) < 4096 {
			arena = make([]byte, 0, 1<<20)
		}
		typ, err := br.ReadByte()
		if err != nil {
			return false, bad("record type", err)
		}
		if typ == snapEnd {
			count, err := binary.ReadUvarint(br)
			if err != nil {
				return false, bad("trailer", err)
			}
			if count != *n {
				return false, fmt.Errorf("trailer counts %d records, read %d: %w", count, *n, ErrBadSnapshot)
			}
			return true, nil
		}
		if typ == 0 || int(typ) > len(buckets) {
			return false, fmt.Errorf("record type %d: %w", typ, ErrBadSnapshot)
		}
		// bbolt copies keys on Put but keeps values until commit: keys go
		// to a scratch buffer, values to shared chunks.
		if kbuf, err = readBytes(br, kbuf[:0]); err != nil {
			return false, bad("key", err)
		}
		k := kbuf
		l := len(arena)
		if arena, err = readBytes(br, arena); err != nil {
			return false, bad("value", err)
		}
		v := arena[l:len(arena):len(arena)]
		if err := bks[typ-1].Put(k, v); err != nil {
			return false, err
		}
		*n++
	}
	return false, nil
}

// readBytes reads a length-prefixed field and appends it to buf.
func readBytes(br *bufio.Reader, buf []byte) ([]byte, error) {
	l, err := binary.ReadUvarint(br)
	if err != nil {
		return buf, err
	}
	if l > 64<<20 {
		return buf, fmt.Errorf("%d-byte field: %w", l, ErrBadSnapshot)
	}
	n := len(buf)
	buf = slices.Grow(buf, int(l))[:n+int(l)]
	_, err = io.ReadFull(br, buf[n:])
	return buf, err
}
