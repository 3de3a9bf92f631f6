package consensus

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// Bucket names. Their order is the record type of a snapshot (index+1), so
// the list is append-only like the command enum.
var buckets = [][]byte{
	[]byte("builds"),     // build key (16 bytes) → build record
	[]byte("idx_state"),  // state byte + build key → nil
	[]byte("idx_drv"),    // drv path + 0 + build key → nil
	[]byte("idx_tag"),    // "k=v" + 0 + build key → nil
	[]byte("idx_wait"),   // store path + 0 + build key → nil
	[]byte("drvs"),       // drv path → Drv JSON
	[]byte("nars"),       // hash part → nar record
	[]byte("idx_holder"), // node + 0 + hash part → nil
	[]byte("nodes"),      // name → Node JSON
	[]byte("events"),     // seq (8 bytes) → Event JSON
	[]byte("meta"),       // settings, event_seq, count/<state>, applied
	[]byte("idx_file"),   // nar file hash (nix32) → hash part
	[]byte("mismatches"), // store path → Mismatch JSON
}

const (
	bkBuilds = iota
	bkByState
	bkByDrv
	bkByTag
	bkWaiting
	bkDrvs
	bkNars
	bkHolders
	bkNodes
	bkEvents
	bkMeta
	bkByFile
	bkMismatches
)

// metaApplied is the meta key of the last applied raft index, so a state
// restored from a snapshot knows how far it is.
var metaApplied = []byte("applied")

const stateFile = "fsm.db"

// FSM is the raft state machine. It implements raft.BatchingFSM and is the
// local read view of the replicated state (see state.go). The state lives in
// a bbolt file under dir that is recreated on open: raft restores the latest
// snapshot and replays the log into it.
type FSM struct {
	dir    string
	logger *slog.Logger

	mu sync.RWMutex // write-held only while Restore swaps db
	db *bolt.DB

	applied atomic.Uint64

	subMu   sync.Mutex
	subs    map[int]chan struct{}
	nextSub int

	// Open change feeds (changes.go); watched is their number, read on
	// every apply without the lock.
	feedMu  sync.Mutex
	feeds   map[*ChangeFeed]struct{}
	watched atomic.Int32

	rejected atomic.Uint64 // entries refused as undecodable (RejectedEntries)
}

var _ raft.BatchingFSM = (*FSM)(nil)

// NewFSM opens an empty state in dir, discarding any previous state file.
func NewFSM(dir string, logger *slog.Logger) (*FSM, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create fsm dir: %w", err)
	}
	path := filepath.Join(dir, stateFile)
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("remove old fsm state: %w", err)
	}
	db, err := openState(path)
	if err != nil {
		return nil, err
	}
	return &FSM{dir: dir, logger: logger, db: db, subs: map[int]chan struct{}{}}, nil
}

func openState(path string) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:        time.Second,
		NoSync:         true, // the raft log and snapshots are the durable truth
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
		PageSize:       16 << 10,
		// A large initial mapping avoids remaps, which would wait for a
		// long snapshot read transaction to end.
		InitialMmapSize: 1 << 30,
	})
	if err != nil {
		return nil, fmt.Errorf("open fsm state: %w", err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range buckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("create fsm buckets: %w", err)
	}
	return db, nil
}

// Close closes the state file.
func (f *FSM) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.db == nil {
		return nil
	}
	err := f.db.Close()
	f.db = nil
	if err != nil {
		return fmt.Errorf("close fsm state: %w", err)
	}
	return nil
}

// RejectedEntries is the number of log entries this replica refused as
// undecodable since it started (see ApplyBatch); every replica counts the
// same entries. A metric for the node to expose.
func (f *FSM) RejectedEntries() uint64 { return f.rejected.Load() }

// AppliedIndex is the index of the last raft log entry applied.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// Subscribe returns a channel that receives a (coalesced) signal after each
// applied batch and restore, and a function that ends the subscription.
func (f *FSM) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	f.subMu.Lock()
	id := f.nextSub
	f.nextSub++
	f.subs[id] = ch
	f.subMu.Unlock()
	return ch, func() {
		f.subMu.Lock()
		delete(f.subs, id)
		f.subMu.Unlock()
	}
}

func (f *FSM) notify() {
	f.subMu.Lock()
	for _, ch := range f.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	f.subMu.Unlock()
}

// Apply applies one log entry; see ApplyBatch.
func (f *FSM) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

type decoded struct {
	cmd   Command
	at    time.Time
	index uint64
}

// ApplyBatch applies committed entries in one bbolt transaction. Each
// response is a command result or an error value. A command that fails
// must change nothing, so when one fails the batch is rolled back and
// replayed with one transaction per command.
//
// An entry that does not decode (an unknown type without SkipIfUnknown,
// a malformed payload) is rejected the same way: its response is an
// error wrapping ErrBadCommand, it changes nothing, and it is logged and
// counted (RejectedEntries). Every replica decodes the same bytes the
// same way, so all of them reject it and none diverges; stopping instead
// would let one bad entry, written by a buggy or hostile member, stop the
// whole mesh at the same index after every restart.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	resp := make([]any, len(logs))
	cmds := make([]decoded, len(logs))
	rejected := false
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue
		}
		cmd, at, err := decodeCommand(l.Data)
		if err != nil {
			f.rejected.Add(1)
			f.logger.Error("rejecting undecodable raft entry", "index", l.Index, "term", l.Term, "bytes", len(l.Data), "err", err)
			resp[i] = fmt.Errorf("apply log %d: %w", l.Index, err)
			rejected = true
			continue
		}
		if cmd == nil {
			f.logger.Warn("skipping unknown command", "type", l.Data[0], "index", l.Index)
		}
		cmds[i] = decoded{cmd: cmd, at: at, index: l.Index}
	}
	f.mu.RLock()
	db := f.db
	failed := false
	cs := f.newChangeSet()
	f.update(db, func(tx *bolt.Tx) bool {
		t := newTxn(tx)
		t.ch = cs
		for i, c := range cmds {
			if c.cmd == nil {
				continue
			}
			resp[i] = t.exec(c.cmd, c.at, c.index)
			if _, isErr := resp[i].(error); isErr {
				failed = true
				return false
			}
		}
		t.flush()
		// Recorded with successful batches only: a rejected command or
		// entry changes nothing, so the restored index may trail by such
		// entries.
		if !rejected {
			t.put(bkMeta, metaApplied, binary.BigEndian.AppendUint64(nil, logs[len(logs)-1].Index))
		}
		return true
	})
	if !failed {
		f.publish(cs, false)
	} else {
		// Only the commands that commit report their changes.
		for i, c := range cmds {
			if c.cmd == nil {
				continue
			}
			cs := f.newChangeSet()
			committed := f.update(db, func(tx *bolt.Tx) bool {
				t := newTxn(tx)
				t.ch = cs
				resp[i] = t.exec(c.cmd, c.at, c.index)
				if _, isErr := resp[i].(error); isErr {
					return false
				}
				t.flush()
				return true
			})
			if committed {
				f.publish(cs, false)
			}
		}
	}
	f.mu.RUnlock()
	if n := len(logs); n > 0 {
		f.applied.Store(logs[n-1].Index)
	}
	f.notify()
	return resp
}

// update runs fn in a write transaction, committing when it returns true,
// and reports whether it committed. A failing commit panics: the state
// would no longer follow the log.
func (f *FSM) update(db *bolt.DB, fn func(*bolt.Tx) bool) bool {
	tx, err := db.Begin(true)
	if err != nil {
		panic(fmt.Sprintf("consensus: begin fsm transaction: %v", err))
	}
	if !fn(tx) {
		if err := tx.Rollback(); err != nil {
			panic(fmt.Sprintf("consensus: roll back fsm transaction: %v", err))
		}
		return false
	}
	if err := tx.Commit(); err != nil {
		panic(fmt.Sprintf("consensus: commit fsm transaction: %v", err))
	}
	return true
}

// view runs fn in a read transaction of the current state.
func (f *FSM) view(fn func(*bolt.Tx) error) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return ErrClosed
	}
	return f.db.View(fn)
}

func u64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func u64b(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}
