package scheduler

// entryHeap is a binary min-heap of entries that keeps each entry's
// position in a dense slice indexed like the entries (Planner.pos), so that
// any entry can be removed in O(log n). The primary key sits in the heap
// array itself, so sifting compares integers without touching the entries;
// only equal keys look at the entries. An entry is in at most one heap at a
// time.
type entryHeap struct {
	items []heapItem
	key   func(e *entry) int64
	tie   func(a, b *entry) bool // a before b, for equal keys
}

type heapItem struct {
	k int64
	i int32
}

// The ready heap puts the largest k1 first (see orderKey).
func readyKey(e *entry) int64 { return -e.k1 }
func readyTie(a, b *entry) bool {
	if a.k2 != b.k2 {
		return a.k2 < b.k2
	}
	return a.b.ID < b.b.ID
}

// readyBefore orders items of ready heaps, also across classes: it is
// orderKey.before.
func readyBefore(es []entry, a, b heapItem) bool {
	if a.k != b.k {
		return a.k < b.k
	}
	return readyTie(&es[a.i], &es[b.i])
}

func deferKey(e *entry) int64   { return e.due }
func deferTie(a, b *entry) bool { return a.b.ID < b.b.ID }
func newReadyHeap() entryHeap   { return entryHeap{key: readyKey, tie: readyTie} }
func (h *entryHeap) len() int   { return len(h.items) }
func (h *entryHeap) top() int32 { return h.items[0].i }
func (h *entryHeap) item(es []entry, e int32) heapItem {
	return heapItem{k: h.key(&es[e]), i: e}
}

func (h *entryHeap) less(es []entry, a, b heapItem) bool {
	if a.k != b.k {
		return a.k < b.k
	}
	return h.tie(&es[a.i], &es[b.i])
}

func (h *entryHeap) swap(pos []int32, i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	pos[h.items[i].i] = int32(i)
	pos[h.items[j].i] = int32(j)
}

func (h *entryHeap) up(es []entry, pos []int32, j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !h.less(es, h.items[j], h.items[i]) {
			break
		}
		h.swap(pos, i, j)
		j = i
	}
}

func (h *entryHeap) down(es []entry, pos []int32, i int) bool {
	i0, n := i, len(h.items)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		j := l
		if r := l + 1; r < n && h.less(es, h.items[r], h.items[l]) {
			j = r
		}
		if !h.less(es, h.items[j], h.items[i]) {
			break
		}
		h.swap(pos, i, j)
		i = j
	}
	return i > i0
}

func (h *entryHeap) push(es []entry, pos []int32, e int32) {
	pos[e] = int32(len(h.items))
	h.items = append(h.items, h.item(es, e))
	h.up(es, pos, len(h.items)-1)
}

// appendRaw adds e without restoring the heap order or recording its
// position; call init afterwards.
func (h *entryHeap) appendRaw(es []entry, e int32) {
	h.items = append(h.items, h.item(es, e))
}

// init restores the heap order of items added by appendRaw, then records
// every position.
func (h *entryHeap) init(es []entry, pos []int32) {
	items := h.items
	for k := len(items)/2 - 1; k >= 0; k-- {
		// sift down without positions: they are written once at the end
		for i, n := k, len(items); ; {
			l := 2*i + 1
			if l >= n {
				break
			}
			j := l
			if r := l + 1; r < n && h.less(es, items[r], items[l]) {
				j = r
			}
			if !h.less(es, items[j], items[i]) {
				break
			}
			items[i], items[j] = items[j], items[i]
			i = j
		}
	}
	for j, it := range items {
		pos[it.i] = int32(j)
	}
}

func (h *entryHeap) pop(es []entry, pos []int32) int32 {
	return h.remove(es, pos, 0)
}

func (h *entryHeap) remove(es []entry, pos []int32, i int) int32 {
	n := len(h.items) - 1
	e := h.items[i].i
	if n != i {
		h.swap(pos, i, n)
		h.items = h.items[:n]
		if !h.down(es, pos, i) {
			h.up(es, pos, i)
		}
	} else {
		h.items = h.items[:n]
	}
	pos[e] = -1
	return e
}

// front lists a heap's items in order without changing the heap: it holds
// the positions whose parents were already listed, itself as a small
// min-heap, so the next item is its head. Listing k items costs
// O(k log k) and touches only the first items of the heap.
type front struct {
	h     *entryHeap
	items []heapItem // copies of h.items[at[x]], for comparing in place
	at    []int32    // positions in h.items
}

// start lists h from its head.
func (f *front) start(h *entryHeap) {
	f.h, f.items, f.at = h, f.items[:0], f.at[:0]
	if h.len() > 0 {
		f.items = append(f.items, h.items[0])
		f.at = append(f.at, 0)
	}
}

func (f *front) len() int       { return len(f.items) }
func (f *front) head() heapItem { return f.items[0] }
func (f *front) swap(a, b int) {
	f.items[a], f.items[b] = f.items[b], f.items[a]
	f.at[a], f.at[b] = f.at[b], f.at[a]
}
func (f *front) less(es []entry, a, b int) bool { return f.h.less(es, f.items[a], f.items[b]) }

// next drops the head and adds its children in the heap.
func (f *front) next(es []entry) {
	j := int(f.at[0])
	n := len(f.items) - 1
	f.swap(0, n)
	f.items, f.at = f.items[:n], f.at[:n]
	f.down(es, 0)
	for c := 2*j + 1; c <= 2*j+2 && c < f.h.len(); c++ {
		f.items = append(f.items, f.h.items[c])
		f.at = append(f.at, int32(c))
		f.up(es, len(f.items)-1)
	}
}

func (f *front) up(es []entry, j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !f.less(es, j, i) {
			break
		}
		f.swap(i, j)
		j = i
	}
}

func (f *front) down(es []entry, i int) {
	n := len(f.items)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		j := l
		if r := l + 1; r < n && f.less(es, r, l) {
			j = r
		}
		if !f.less(es, j, i) {
			return
		}
		f.swap(i, j)
		i = j
	}
}
