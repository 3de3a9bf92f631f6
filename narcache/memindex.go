package narcache

import (
	"sync"

	"github.com/drvmesh/drvmesh/store"
)

// MemIndex is an in-memory Index, for tests, benchmarks and single-node
// use. It is safe for concurrent use.
type MemIndex struct {
	mu      sync.RWMutex
	entries map[string]Entry
	holders map[string][]Holder
}

var _ VersionIndex = (*MemIndex)(nil)

// NewMemIndex returns an empty index.
func NewMemIndex() *MemIndex {
	return &MemIndex{entries: map[string]Entry{}, holders: map[string][]Holder{}}
}

// Put adds or replaces the entry of e.Info.StorePath, bumping its version.
func (m *MemIndex) Put(e Entry) {
	hp := store.HashPart(e.Info.StorePath)
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.entries[hp]; ok && e.Version <= old.Version {
		e.Version = old.Version + 1
	}
	m.entries[hp] = e
}

// SetHolders sets the other nodes that hold the file with this key.
func (m *MemIndex) SetHolders(key string, hs []Holder) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.holders[key] = hs
}

// Lookup implements Index.
func (m *MemIndex) Lookup(hashPart string) (Entry, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, ok := m.entries[hashPart]
	return e, ok
}

// Holders implements Index.
func (m *MemIndex) Holders(key string) []Holder {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.holders[key]
}

// Version implements VersionIndex.
func (m *MemIndex) Version(hashPart string) (uint64, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, ok := m.entries[hashPart]
	return e.Version, ok
}
