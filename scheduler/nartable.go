package scheduler

import "hash/maphash"

// narTable gives held nar paths small ids (indexes of Planner.holders). It
// is an open-addressing hash table with linear probing over 8-byte slots,
// each the upper half of the path's hash and its id: a lookup reads one
// small dense array, compares a path only when the hash halves match, and
// a path held nowhere is usually rejected without reading any path. The
// slot index is taken from the stored hash half, so the table grows and
// deletes without hashing paths again.
type narTable struct {
	seed  maphash.Seed
	slots []uint64 // hash>>32 << 32 | id+1; 0 is empty
	paths []string // by id; "" for a free id
	free  []int32  // free ids
	n     int      // ids in use
}

const narTableMinSlots = 64

func newNarTable() narTable { return narTable{seed: maphash.MakeSeed()} }

func (t *narTable) len() int { return t.n }

func (t *narTable) tag(path string) uint64 { return maphash.String(t.seed, path) >> 32 }

// reserve sizes the table for n paths.
func (t *narTable) reserve(n int) {
	size := narTableMinSlots
	for size*7/10 < n {
		size *= 2
	}
	if size > len(t.slots) {
		t.rehash(size)
	}
	if cap(t.paths) < n {
		paths := make([]string, len(t.paths), n)
		copy(paths, t.paths)
		t.paths = paths
	}
}

// find returns the id of path.
func (t *narTable) find(path string) (int32, bool) {
	if t.n == 0 {
		return -1, false
	}
	tag := t.tag(path)
	mask := uint64(len(t.slots) - 1)
	for i := tag & mask; ; i = (i + 1) & mask {
		s := t.slots[i]
		if s == 0 {
			return -1, false
		}
		if s>>32 == tag && t.paths[uint32(s)-1] == path {
			return int32(uint32(s) - 1), true
		}
	}
}

// intern returns the id of path, giving it one if it has none.
func (t *narTable) intern(path string) int32 {
	if id, ok := t.find(path); ok {
		return id
	}
	if (t.n+1)*10 > len(t.slots)*7 {
		t.rehash(max(2*len(t.slots), narTableMinSlots))
	}
	var id int32
	if k := len(t.free); k > 0 {
		id = t.free[k-1]
		t.free = t.free[:k-1]
		t.paths[id] = path
	} else {
		id = int32(len(t.paths))
		t.paths = append(t.paths, path)
	}
	t.n++
	t.put(t.tag(path)<<32 | uint64(id+1))
	return id
}

// put stores a slot value at the first empty slot from its home.
func (t *narTable) put(s uint64) {
	mask := uint64(len(t.slots) - 1)
	i := s >> 32 & mask
	for t.slots[i] != 0 {
		i = (i + 1) & mask
	}
	t.slots[i] = s
}

func (t *narTable) rehash(size int) {
	old := t.slots
	t.slots = make([]uint64, size)
	for _, s := range old {
		if s != 0 {
			t.put(s)
		}
	}
}

// remove forgets path and frees its id.
func (t *narTable) remove(path string) {
	if t.n == 0 {
		return
	}
	tag := t.tag(path)
	mask := uint64(len(t.slots) - 1)
	i := tag & mask
	for {
		s := t.slots[i]
		if s == 0 {
			return
		}
		if s>>32 == tag && t.paths[uint32(s)-1] == path {
			break
		}
		i = (i + 1) & mask
	}
	id := int32(uint32(t.slots[i]) - 1)
	t.paths[id] = ""
	t.free = append(t.free, id)
	t.n--
	// Backward-shift deletion: move later slots of the run into the hole
	// when the hole lies between their home and where they are.
	for j := (i + 1) & mask; t.slots[j] != 0; j = (j + 1) & mask {
		home := t.slots[j] >> 32 & mask
		if (j-home)&mask >= (j-i)&mask {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = 0
}
