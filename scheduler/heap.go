package scheduler

// entryHeap is a binary min-heap of entries that keeps each entry's
// position in entry.pos so that any entry can be removed in O(log n). The
// primary key sits in the heap array itself, so sifting compares integers
// without touching the entries; only equal keys look at the entries.
// An entry is in at most one heap at a time.
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
func readyKey(e *entry) int64   { return -e.key.k1 }
func readyTie(a, b *entry) bool { return a.key.before(b.key) }
func deferKey(e *entry) int64   { return e.due }
func deferTie(a, b *entry) bool { return a.key.id < b.key.id }
func newReadyHeap() entryHeap   { return entryHeap{key: readyKey, tie: readyTie} }
func (h *entryHeap) len() int   { return len(h.items) }
func (h *entryHeap) top() int32 { return h.items[0].i }
func (h *entryHeap) reset()     { h.items = h.items[:0] }
func (h *entryHeap) item(es []entry, e int32) heapItem {
	return heapItem{k: h.key(&es[e]), i: e}
}

func (h *entryHeap) less(es []entry, a, b heapItem) bool {
	if a.k != b.k {
		return a.k < b.k
	}
	return h.tie(&es[a.i], &es[b.i])
}

func (h *entryHeap) swap(es []entry, i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	es[h.items[i].i].pos = int32(i)
	es[h.items[j].i].pos = int32(j)
}

func (h *entryHeap) up(es []entry, j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !h.less(es, h.items[j], h.items[i]) {
			break
		}
		h.swap(es, i, j)
		j = i
	}
}

func (h *entryHeap) down(es []entry, i int) bool {
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
		h.swap(es, i, j)
		i = j
	}
	return i > i0
}

func (h *entryHeap) push(es []entry, e int32) {
	es[e].pos = int32(len(h.items))
	h.items = append(h.items, h.item(es, e))
	h.up(es, len(h.items)-1)
}

// appendRaw adds e without restoring the heap order; call init afterwards.
func (h *entryHeap) appendRaw(es []entry, e int32) {
	es[e].pos = int32(len(h.items))
	h.items = append(h.items, h.item(es, e))
}

func (h *entryHeap) init(es []entry) {
	for i := len(h.items)/2 - 1; i >= 0; i-- {
		h.down(es, i)
	}
}

func (h *entryHeap) pop(es []entry) int32 {
	return h.remove(es, 0)
}

func (h *entryHeap) remove(es []entry, i int) int32 {
	n := len(h.items) - 1
	e := h.items[i].i
	if n != i {
		h.swap(es, i, n)
		h.items = h.items[:n]
		if !h.down(es, i) {
			h.up(es, i)
		}
	} else {
		h.items = h.items[:n]
	}
	es[e].pos = -1
	return e
}
