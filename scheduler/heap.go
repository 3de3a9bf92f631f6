package scheduler

// entryHeap is a binary heap of entry indices that keeps each entry's
// position in entry.pos so that any entry can be removed in O(log n).
// An entry is in at most one heap at a time.
type entryHeap struct {
	idx  []int32
	less func(a, b *entry) bool
}

func readyLess(a, b *entry) bool { return a.key.before(b.key) }

func deferLess(a, b *entry) bool {
	if a.due != b.due {
		return a.due < b.due
	}
	return a.key.id < b.key.id
}

func (h *entryHeap) len() int { return len(h.idx) }

func (h *entryHeap) top() int32 { return h.idx[0] }

func (h *entryHeap) swap(es []entry, i, j int) {
	h.idx[i], h.idx[j] = h.idx[j], h.idx[i]
	es[h.idx[i]].pos = int32(i)
	es[h.idx[j]].pos = int32(j)
}

func (h *entryHeap) up(es []entry, j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !h.less(&es[h.idx[j]], &es[h.idx[i]]) {
			break
		}
		h.swap(es, i, j)
		j = i
	}
}

func (h *entryHeap) down(es []entry, i int) bool {
	i0, n := i, len(h.idx)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		j := l
		if r := l + 1; r < n && h.less(&es[h.idx[r]], &es[h.idx[l]]) {
			j = r
		}
		if !h.less(&es[h.idx[j]], &es[h.idx[i]]) {
			break
		}
		h.swap(es, i, j)
		i = j
	}
	return i > i0
}

func (h *entryHeap) push(es []entry, e int32) {
	es[e].pos = int32(len(h.idx))
	h.idx = append(h.idx, e)
	h.up(es, len(h.idx)-1)
}

// appendRaw adds e without restoring the heap order; call init afterwards.
func (h *entryHeap) appendRaw(es []entry, e int32) {
	es[e].pos = int32(len(h.idx))
	h.idx = append(h.idx, e)
}

func (h *entryHeap) init(es []entry) {
	for i := len(h.idx)/2 - 1; i >= 0; i-- {
		h.down(es, i)
	}
}

func (h *entryHeap) pop(es []entry) int32 {
	return h.remove(es, 0)
}

func (h *entryHeap) remove(es []entry, i int) int32 {
	n := len(h.idx) - 1
	e := h.idx[i]
	if n != i {
		h.swap(es, i, n)
		h.idx = h.idx[:n]
		if !h.down(es, i) {
			h.up(es, i)
		}
	} else {
		h.idx = h.idx[:n]
	}
	es[e].pos = -1
	return e
}
