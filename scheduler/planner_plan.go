package scheduler

import (
	"slices"
	"time"
)

// Plan makes one planning round at time now: it releases deferred builds
// that are due, then repeatedly takes the best ready build across the
// classes that still have a node with a free slot, and sends it to the best
// node. Its cost grows with the number of assignments and classes, not with
// the queue length. Plan leaves the planner as it found it: the caller
// reports the outcome back through Remove and SetCapacity once the
// assignments are committed.
func (p *Planner) Plan(now time.Time) Plan {
	if t := unixNano(now); t > p.now {
		p.now = t
	}
	p.rankNodes()
	for p.deferred.len() > 0 && p.entries[p.deferred.top()].due <= p.now {
		i := p.deferred.pop(p.entries, p.pos)
		p.settle(i)
	}

	active := p.active[:0]
	for ci, c := range p.classes {
		if c.ready.len() > 0 && len(c.nodes) > 0 {
			c.cursor = 0
			c.front.start(&c.ready)
			active = append(active, int32(ci))
		}
	}
	// Builds are taken in batches: first the next builds in merged order
	// (while their classes are live), then their nars are looked up
	// together, then each is placed. A class can run out of slots within a
	// batch; its later builds are then skipped, exactly as if the class had
	// dropped out when they came up, since slots only decrease in a round.
	// Batches double up to maxBatch, so a round that assigns little looks
	// at little more.
	var plan Plan
	for size := 1; len(active) > 0; size = min(2*size, maxBatch) {
		batch, idx := p.batch[:0], p.batchIdx[:0]
		for len(batch) < size && len(active) > 0 {
			bi, best := 0, p.classes[active[0]].front.head()
			for k := 1; k < len(active); k++ {
				if h := p.classes[active[k]].front.head(); readyBefore(p.entries, h, best) {
					bi, best = k, h
				}
			}
			c := p.classes[active[bi]]
			if !p.live(c) {
				active = slices.Delete(active, bi, bi+1)
				continue
			}
			batch = append(batch, p.entries[best.i].b)
			idx = append(idx, best.i)
			c.front.next(p.entries)
			if c.front.len() == 0 {
				active = slices.Delete(active, bi, bi+1)
			}
		}
		p.batch, p.batchIdx = batch, idx
		p.resolve(batch)
		for q, b := range batch {
			c := p.classes[p.entries[idx[q]].class]
			if !p.live(c) {
				continue
			}
			ni := p.pick(c, b, p.flat[p.off[q]:p.off[q+1]], p.ids[p.off[q]:p.off[q+1]])
			if p.rem[ni] == int32(p.nodes[ni].n.FreeSlots) {
				p.used = append(p.used, ni)
			}
			p.rem[ni]--
			plan.Assignments = append(plan.Assignments, Assignment{Build: b.ID, Node: p.nodes[ni].n.Name})
		}
	}
	clear(p.batch[:cap(p.batch)]) // keep no build alive past the round
	clear(p.flat[:cap(p.flat)])

	for _, ni := range p.used {
		p.rem[ni] = int32(p.nodes[ni].n.FreeSlots)
	}
	p.active, p.used = active[:0], p.used[:0]
	return plan
}

func (p *Planner) left(ni int32) int32 { return p.rem[ni] }

// live advances the class cursor past nodes without a slot left this round
// and reports whether any node of the class still has one.
func (p *Planner) live(c *class) bool {
	for c.cursor < len(c.nodes) && p.left(c.nodes[c.cursor]) == 0 {
		c.cursor++
	}
	return c.cursor < len(c.nodes)
}

// maxBatch bounds how many builds Plan takes ahead of placing them.
const maxBatch = 64

// resolve gathers the input nars of a batch of builds into p.flat (build
// q's at p.off[q]:p.off[q+1]) and looks them up in p.ids (-1: held
// nowhere). Each step runs over the whole batch, so the memory reads of
// different builds overlap instead of waiting for one another.
//
// Before each step that waits on memory, a short loop reads one byte of
// what it will need (each build's nar list, then both ends of each path):
// in a loop that short the processor keeps many reads in flight at once,
// so the step then finds its data in cache instead of waiting for each
// read in turn. The bytes read are summed into p.touchSum so that the
// reads are kept.
func (p *Planner) resolve(batch []*Build) {
	var sum byte
	for _, b := range batch {
		if len(b.InputNars) > 0 {
			sum += byte(b.InputNars[0].Size)
		}
	}
	flat, off := p.flat[:0], append(p.off[:0], 0)
	for _, b := range batch {
		flat = append(flat, b.InputNars...)
		off = append(off, int32(len(flat)))
	}
	for _, nar := range flat {
		if n := len(nar.Path); n > 0 {
			sum += nar.Path[0] + nar.Path[n-1]
		}
	}
	p.touchSum += sum
	ids := p.ids[:0]
	for _, nar := range flat {
		id, ok := p.narIDs.find(nar.Path)
		if !ok {
			id = -1
		}
		ids = append(ids, id)
	}
	p.flat, p.off, p.ids = flat, off, ids
}

// pick returns the best node of class c for build b; c must be live. nars
// are b's input nars and ids their nar ids (see resolve). The candidates
// are the nodes holding some input nar (tallied through the holders index)
// and the least-loaded free node of the class, which is the best of all
// nodes holding nothing.
func (p *Planner) pick(c *class, b *Build, nars []Nar, ids []int32) int32 {
	p.epoch++
	if p.epoch == 0 {
		clear(p.mark)
		p.epoch = 1
	}
	// The tally is written without branches on whether a node is new to
	// this build (they would be mispredicted half the time): touched gets
	// every node written at its end, and only new ones are kept.
	if len(p.touched) <= len(p.nodes) {
		p.touched = make([]int32, len(p.nodes)+1)
	}
	touched, n := p.touched, 0
	supports, rem, mark, bytes, epoch := c.supports, p.rem, p.mark, p.bytes, p.epoch
	for k, nar := range nars {
		if ids[k] < 0 {
			continue
		}
		size := nar.Size
		for _, h := range p.holders[ids[k]] {
			if !supports[h] || rem[h] == 0 {
				continue
			}
			held, fresh := bytes[h], 0
			if mark[h] != epoch {
				held, fresh = 0, 1
			}
			mark[h] = epoch
			bytes[h] = held + size
			touched[n] = h
			n += fresh
		}
	}
	touched = touched[:n]

	if len(b.FailedOn) == 0 {
		return p.pickSimple(c, touched)
	}
	best, bestC := int32(-1), candidate{}
	consider := func(h int32) {
		n := p.nodes[h]
		cand := candidate{
			failed: slices.Contains(b.FailedOn, n.n.Name),
			load:   n.load,
			name:   n.n.Name,
		}
		if p.mark[h] == p.epoch {
			cand.bytes = p.bytes[h]
		}
		if best < 0 || cand.better(bestC) {
			best, bestC = h, cand
		}
	}
	for _, h := range touched {
		consider(h)
	}
	firstFailed := int32(-1)
	for k := c.cursor; k < len(c.nodes); k++ {
		h := c.nodes[k]
		if p.left(h) == 0 {
			continue
		}
		if slices.Contains(b.FailedOn, p.nodes[h].n.Name) {
			if firstFailed < 0 {
				firstFailed = h
			}
			continue
		}
		consider(h)
		break
	}
	if firstFailed >= 0 {
		consider(firstFailed)
	}
	return best
}

// pickSimple is pick's ranking for a build that failed nowhere: most bytes
// held, then least load, then smallest name, among the touched nodes and
// the first node of the class with a slot left (c must be live). It reads
// only dense per-node arrays.
func (p *Planner) pickSimple(c *class, touched []int32) int32 {
	most := int64(0)
	for _, h := range touched {
		most = max(most, p.bytes[h])
	}
	best := int32(-1)
	for _, h := range touched {
		if p.bytes[h] == most && (best < 0 || p.before(h, best)) {
			best = h
		}
	}
	head := c.nodes[c.cursor] // live: the cursor is at a node with a slot
	held := int64(0)
	if p.mark[head] == p.epoch {
		held = p.bytes[head]
	}
	if best < 0 || held > most || held == most && p.before(head, best) {
		best = head
	}
	return best
}
