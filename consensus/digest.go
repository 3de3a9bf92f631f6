package consensus

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"

	bolt "go.etcd.io/bbolt"
)

// Digest returns a SHA-256, in lowercase hex, of the replicated state:
// every bucket in the order of buckets, and in each every key and value
// in key order, each bucket name, key and value preceded by its length
// and each entry by a 1 byte, the end of a bucket a 0 byte, so no two
// states share a digest by shifting bytes between fields.
//
// It covers everything replicas must agree on: builds and their indexes,
// derivations, nar records and theirs, nodes, events, mismatches, the
// settings, the per-state counters and the event sequence. It leaves out
// one key only, meta "applied": the index of the last applied entry is
// this replica's progress, not state, and it moves with how raft batched
// the log here (a batch with a refused entry does not record it). Two
// replicas that applied the same log have the same digest, whatever
// their batching or snapshots; the chaos and security tests compare
// replicas with it.
func (f *FSM) Digest() (string, error) {
	h := sha256.New()
	err := f.view(func(tx *bolt.Tx) error {
		for i, name := range buckets {
			writeField(h, name)
			c := tx.Bucket(name).Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if i == bkMeta && bytes.Equal(k, metaApplied) {
					continue
				}
				h.Write([]byte{1})
				writeField(h, k)
				writeField(h, v)
			}
			h.Write([]byte{0})
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// writeField writes b with its length in front.
func writeField(h hash.Hash, b []byte) {
	var n [binary.MaxVarintLen64]byte
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(b)))])
	h.Write(b)
}
