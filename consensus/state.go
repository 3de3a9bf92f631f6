package consensus

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// The read view: every method is a local bbolt read transaction, safe to
// call concurrently with Apply, and never goes through raft (use
// Raft.Barrier or Raft.VerifyLeader first when a read must be fresh).

// BuildFilter selects builds for ListBuilds.
type BuildFilter struct {
	State  string // one state, or "" for all
	Tag    string // "key=value", or "" for all
	Limit  int    // at most this many; 0 means no limit
	Before string // only builds older than this id (paging), or ""
}

// GetBuild returns one build, or ErrNotFound.
func (f *FSM) GetBuild(id string) (*Build, error) {
	var b *Build
	err := f.view(func(tx *bolt.Tx) error {
		var err error
		b, _, err = newTxn(tx).getBuild(id)
		return err
	})
	return b, err
}

// ListBuilds returns the builds matching flt, newest first.
func (f *FSM) ListBuilds(flt BuildFilter) ([]*Build, error) {
	if flt.State != "" && !validState(flt.State) {
		return nil, fmt.Errorf("state %q: %w", flt.State, ErrBadCommand)
	}
	var before []byte
	if flt.Before != "" {
		var err error
		if before, err = buildKey(flt.Before); err != nil {
			return nil, err
		}
	}
	var out []*Build
	err := f.view(func(tx *bolt.Tx) error {
		t := newTxn(tx)
		// Walk the narrowest index; keys end with the 16-byte build key.
		bk, prefix := bkBuilds, []byte(nil)
		switch {
		case flt.Tag != "":
			if !strings.Contains(flt.Tag, "=") {
				return fmt.Errorf("tag %q is not key=value: %w", flt.Tag, ErrBadCommand)
			}
			bk, prefix = bkByTag, append([]byte(flt.Tag), 0)
		case flt.State != "":
			bk, prefix = bkByState, []byte{stateCode(flt.State)}
		}
		return reverseScan(t.b[bk].Cursor(), prefix, before, func(k []byte) bool {
			b, _, err := t.getBuild(hex.EncodeToString(k[len(k)-16:]))
			if err != nil {
				panic(fmt.Sprintf("consensus: index %s names missing build %x", buckets[bk], k))
			}
			if flt.State != "" && b.State != flt.State {
				return true
			}
			out = append(out, b)
			return flt.Limit <= 0 || len(out) < flt.Limit
		})
	})
	return out, err
}

// reverseScan calls fn with the keys starting with prefix, descending,
// starting below prefix+before (or at the last such key), until fn is false.
func reverseScan(c *bolt.Cursor, prefix, before []byte, fn func(k []byte) bool) error {
	var k []byte
	switch {
	case before != nil:
		k, _ = c.Seek(append(bytes.Clone(prefix), before...))
		if k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
	case len(prefix) == 0:
		k, _ = c.Last()
	default:
		end := bytes.Clone(prefix)
		end[len(end)-1]++ // prefixes end in a state byte or a 0 separator
		k, _ = c.Seek(end)
		if k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
	}
	for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Prev() {
		if !fn(k) {
			return nil
		}
	}
	return nil
}

// BuildsByDerivation returns the builds of a derivation, oldest first.
func (f *FSM) BuildsByDerivation(drv string) ([]*Build, error) {
	var out []*Build
	err := f.view(func(tx *bolt.Tx) error {
		t := newTxn(tx)
		for _, k := range t.prefixKeys(bkByDrv, append([]byte(drv), 0)) {
			b, _, err := t.getBuild(hex.EncodeToString(k[len(k)-16:]))
			if err != nil {
				return err
			}
			out = append(out, b)
		}
		return nil
	})
	return out, err
}

// QueuedBuilds calls fn for every queued build, oldest first, until fn
// returns false. fn runs inside a read transaction: it must not call back
// into the FSM.
func (f *FSM) QueuedBuilds(fn func(*Build) bool) error {
	return f.view(func(tx *bolt.Tx) error {
		t := newTxn(tx)
		prefix := []byte{stateCode(StateQueued)}
		c := t.b[bkByState].Cursor()
		for k, _ := c.Seek(prefix); k != nil && k[0] == prefix[0]; k, _ = c.Next() {
			b, _, err := t.getBuild(hex.EncodeToString(k[1:]))
			if err != nil {
				return err
			}
			if !fn(b) {
				return nil
			}
		}
		return nil
	})
}

// Drv returns a derivation's metadata, or ErrNotFound.
func (f *FSM) Drv(path string) (*Drv, error) {
	var d *Drv
	err := f.view(func(tx *bolt.Tx) error {
		data := tx.Bucket(buckets[bkDrvs]).Get([]byte(path))
		if data == nil {
			return fmt.Errorf("derivation %s: %w", path, ErrNotFound)
		}
		d = &Drv{}
		return json.Unmarshal(data, d)
	})
	return d, err
}

// Mismatch returns the mismatch record of a store path, or ErrNotFound
// when every report of the path agreed.
func (f *FSM) Mismatch(path string) (*Mismatch, error) {
	var m *Mismatch
	err := f.view(func(tx *bolt.Tx) error {
		m = newTxn(tx).getMismatch(path)
		if m == nil {
			return fmt.Errorf("mismatch of %s: %w", path, ErrNotFound)
		}
		return nil
	})
	return m, err
}

// Mismatches returns every mismatch record, by store path.
func (f *FSM) Mismatches() ([]Mismatch, error) {
	var out []Mismatch
	err := f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(buckets[bkMismatches]).ForEach(func(k, v []byte) error {
			var m Mismatch
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("decode mismatch %s: %w", k, err)
			}
			out = append(out, m)
			return nil
		})
	})
	return out, err
}

// NarInfoByHash returns the nar record of a store path hash part, or
// ErrNotFound.
func (f *FSM) NarInfoByHash(hash string) (*NarInfo, error) {
	var n *NarInfo
	err := f.view(func(tx *bolt.Tx) error {
		n = newTxn(tx).getNar(hash)
		if n == nil {
			return fmt.Errorf("nar %s: %w", hash, ErrNotFound)
		}
		return nil
	})
	return n, err
}

// MissingPaths returns the store paths (in input order) whose nar is not
// recorded or held by no node. Malformed paths count as missing.
func (f *FSM) MissingPaths(paths []string) ([]string, error) {
	var out []string
	err := f.view(func(tx *bolt.Tx) error {
		t := newTxn(tx)
		for _, p := range paths {
			if !t.pathPresent(p) {
				out = append(out, p)
			}
		}
		return nil
	})
	return out, err
}

// EachNar calls fn with the hash part and record of every nar, in hash
// part order, until fn returns false. fn runs inside a read transaction:
// it must not call back into the FSM.
func (f *FSM) EachNar(fn func(hash string, n *NarInfo) bool) error {
	return f.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(buckets[bkNars]).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			n, err := decodeNarInfo(v)
			if err != nil {
				return fmt.Errorf("stored nar %s: %w", k, err)
			}
			if !fn(string(k), n) {
				return nil
			}
		}
		return nil
	})
}

// NarsHeldBy returns the hash parts of the nars a node holds, sorted.
func (f *FSM) NarsHeldBy(node string) ([]string, error) {
	var out []string
	err := f.view(func(tx *bolt.Tx) error {
		prefix := append([]byte(node), 0)
		for _, k := range newTxn(tx).prefixKeys(bkHolders, prefix) {
			out = append(out, string(k[len(prefix):]))
		}
		return nil
	})
	return out, err
}

// Nodes returns the admitted nodes, by name, Kind and Owner filled in
// for records written before they existed (decodeNode).
func (f *FSM) Nodes() ([]Node, error) {
	var out []Node
	err := f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(buckets[bkNodes]).ForEach(func(_, v []byte) error {
			n, err := decodeNode(v)
			if err != nil {
				return err
			}
			out = append(out, *n)
			return nil
		})
	})
	return out, err
}

// Node returns one admission record, or ErrNotFound; see Nodes.
func (f *FSM) Node(name string) (*Node, error) {
	var n *Node
	err := f.view(func(tx *bolt.Tx) error {
		data := tx.Bucket(buckets[bkNodes]).Get([]byte(name))
		if data == nil {
			return fmt.Errorf("node %q: %w", name, ErrNotFound)
		}
		var err error
		n, err = decodeNode(data)
		return err
	})
	return n, err
}

// decodeNode decodes a node record with the defaults of fields older
// records lack written out: Kind KindTrusted, Owner the node's name.
func decodeNode(data []byte) (*Node, error) {
	var n Node
	if err := json.Unmarshal(data, &n); err != nil {
		return nil, fmt.Errorf("decode node record: %w", err)
	}
	n = n.normalized()
	return &n, nil
}

// PendingEvents returns up to limit (0: all) unacknowledged events, oldest
// first.
func (f *FSM) PendingEvents(limit int) ([]Event, error) {
	var out []Event
	err := f.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(buckets[bkEvents]).Cursor()
		for k, v := c.First(); k != nil && (limit <= 0 || len(out) < limit); k, v = c.Next() {
			e, err := decodeEvent(u64(k), v)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// Settings returns the mesh settings (zero until SetSettings).
func (f *FSM) Settings() (Settings, error) {
	var s Settings
	err := f.view(func(tx *bolt.Tx) error {
		s = newTxn(tx).settings()
		return nil
	})
	return s, err
}

// Counts returns the number of builds in each state (every state present).
func (f *FSM) Counts() (map[string]int, error) {
	out := make(map[string]int, len(States))
	err := f.view(func(tx *bolt.Tx) error {
		meta := tx.Bucket(buckets[bkMeta])
		for _, s := range States {
			out[s] = int(u64(meta.Get([]byte("count/" + s))))
		}
		return nil
	})
	return out, err
}

// NarInfoByFile returns the nar record one of whose files has this key
// (the nix32 FileHash), or ErrNotFound.
func (f *FSM) NarInfoByFile(key string) (*NarInfo, error) {
	var hash []byte
	_ = f.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(buckets[bkByFile]).Get([]byte(key)); v != nil {
			hash = append([]byte(nil), v...)
		}
		return nil
	})
	if hash == nil {
		return nil, fmt.Errorf("nar file %s: %w", key, ErrNotFound)
	}
	return f.NarInfoByHash(string(hash))
}

// LatestBuild is the newest build of the derivation drv in state, or in
// any state when state is ""; nil when there is none. Build ids sort by
// creation time.
func (f *FSM) LatestBuild(drv, state string) *Build {
	bs, err := f.BuildsByDerivation(drv)
	if err != nil {
		return nil
	}
	var latest *Build
	for _, b := range bs {
		if (state == "" || b.State == state) && (latest == nil || b.ID > latest.ID) {
			latest = b
		}
	}
	return latest
}
