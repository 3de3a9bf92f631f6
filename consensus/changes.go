package consensus

import "sync"

// MaxFeedIDs bounds the ids a ChangeFeed accumulates between two Takes;
// beyond it the feed drops them and reports Reset instead.
const MaxFeedIDs = 1 << 20

// Changes is what committed transactions changed since the previous Take.
// When Reset is true the id sets are empty and the consumer must read the
// whole state again: a snapshot was restored, or the feed overflowed.
type Changes struct {
	// Builds holds the ids of builds created or changed, each once.
	Builds []string
	// Nars holds the hash parts of nar records created or changed
	// (including their holders), each once.
	Nars []string
	// Nodes is true when an admission record was written or removed.
	Nodes bool
	// Settings is true when the mesh settings were written.
	Settings bool
	// Reset is true when the consumer must start from a full read.
	Reset bool
}

// Empty reports whether c reports nothing.
func (c Changes) Empty() bool {
	return len(c.Builds) == 0 && len(c.Nars) == 0 && !c.Nodes && !c.Settings && !c.Reset
}

// changeSet is what one write transaction changed. A txn records into it
// only when some feed is open (txn.ch non-nil), so applying stays free of
// extra allocations otherwise.
type changeSet struct {
	builds   []string
	nars     []string
	nodes    bool
	settings bool
}

// ChangeFeed accumulates the changes of committed transactions for one
// consumer. C signals (coalesced) that Take has something; Take returns
// and clears it. It is safe for concurrent use.
type ChangeFeed struct {
	f   *FSM
	ch  chan struct{}
	max int // ids held before a reset; MaxFeedIDs

	mu       sync.Mutex
	builds   map[string]struct{}
	nars     map[string]struct{}
	nodes    bool
	settings bool
	reset    bool
	closed   bool
}

// WatchChanges opens a feed that receives the changes of every transaction
// committed from now on. Close it when done: an open feed makes every
// apply record its changes.
func (f *FSM) WatchChanges() *ChangeFeed {
	cf := &ChangeFeed{f: f, ch: make(chan struct{}, 1), max: MaxFeedIDs, builds: map[string]struct{}{}, nars: map[string]struct{}{}}
	// An apply in flight decided not to record before the feed existed:
	// wait for it, so that whatever a read after this call misses is
	// reported.
	f.mu.Lock()
	f.feedMu.Lock()
	if f.feeds == nil {
		f.feeds = map[*ChangeFeed]struct{}{}
	}
	f.feeds[cf] = struct{}{}
	f.watched.Store(int32(len(f.feeds)))
	f.feedMu.Unlock()
	f.mu.Unlock()
	return cf
}

// C receives a signal when changes are waiting; signals coalesce.
func (cf *ChangeFeed) C() <-chan struct{} { return cf.ch }

// Take returns the changes accumulated since the previous Take and clears
// them. The ids come in no particular order.
func (cf *ChangeFeed) Take() Changes {
	cf.mu.Lock()
	defer cf.mu.Unlock()
	c := Changes{Nodes: cf.nodes, Settings: cf.settings, Reset: cf.reset}
	if len(cf.builds) > 0 {
		c.Builds = make([]string, 0, len(cf.builds))
		for id := range cf.builds {
			c.Builds = append(c.Builds, id)
		}
		clear(cf.builds)
	}
	if len(cf.nars) > 0 {
		c.Nars = make([]string, 0, len(cf.nars))
		for h := range cf.nars {
			c.Nars = append(c.Nars, h)
		}
		clear(cf.nars)
	}
	cf.nodes, cf.settings, cf.reset = false, false, false
	return c
}

// Close ends the feed: it receives nothing more.
func (cf *ChangeFeed) Close() {
	cf.f.feedMu.Lock()
	delete(cf.f.feeds, cf)
	cf.f.watched.Store(int32(len(cf.f.feeds)))
	cf.f.feedMu.Unlock()
	cf.mu.Lock()
	cf.closed = true
	cf.builds, cf.nars = map[string]struct{}{}, map[string]struct{}{}
	cf.mu.Unlock()
}

// merge adds a committed transaction's changes, or a reset when cs is nil.
func (cf *ChangeFeed) merge(cs *changeSet) {
	cf.mu.Lock()
	if cf.closed {
		cf.mu.Unlock()
		return
	}
	switch {
	case cs == nil:
		cf.overflow()
	case cf.reset:
		// Everything is read again anyway.
	default:
		for _, id := range cs.builds {
			cf.builds[id] = struct{}{}
		}
		for _, h := range cs.nars {
			cf.nars[h] = struct{}{}
		}
		cf.nodes = cf.nodes || cs.nodes
		cf.settings = cf.settings || cs.settings
		if len(cf.builds)+len(cf.nars) > cf.max {
			cf.overflow()
		}
	}
	cf.mu.Unlock()
	select {
	case cf.ch <- struct{}{}:
	default:
	}
}

// overflow drops the accumulated ids for a reset; cf.mu is held.
func (cf *ChangeFeed) overflow() {
	cf.reset = true
	cf.builds, cf.nars = map[string]struct{}{}, map[string]struct{}{}
	cf.nodes, cf.settings = false, false
}

// newChangeSet returns a set to record a transaction's changes into, or
// nil when no feed is open.
func (f *FSM) newChangeSet() *changeSet {
	if f.watched.Load() == 0 {
		return nil
	}
	return &changeSet{}
}

// publish merges a committed transaction's changes (nil: a reset) into
// every open feed.
func (f *FSM) publish(cs *changeSet, reset bool) {
	if cs == nil && !reset {
		return
	}
	if cs != nil && len(cs.builds) == 0 && len(cs.nars) == 0 && !cs.nodes && !cs.settings {
		return
	}
	f.feedMu.Lock()
	feeds := make([]*ChangeFeed, 0, len(f.feeds))
	for cf := range f.feeds {
		feeds = append(feeds, cf)
	}
	f.feedMu.Unlock()
	for _, cf := range feeds {
		if reset {
			cf.merge(nil)
		} else {
			cf.merge(cs)
		}
	}
}

func (cs *changeSet) build(id string) {
	if cs != nil {
		cs.builds = append(cs.builds, id)
	}
}

func (cs *changeSet) nar(hash string) {
	if cs != nil {
		cs.nars = append(cs.nars, hash)
	}
}

func (cs *changeSet) node() {
	if cs != nil {
		cs.nodes = true
	}
}

func (cs *changeSet) setting() {
	if cs != nil {
		cs.settings = true
	}
}
