package scheduler

import (
	"errors"
	"fmt"
	"slices"
)

// Reset replaces everything the planner holds with state. Invalid builds
// and nodes are skipped and reported together. Build ids must be unique
// (Schedule keeps the last of repeated ids, Reset would keep all); a
// repeated node name replaces the earlier node. The latest now seen is
// kept. The id and input indexes are built on first need (see Prepare).
//
// Nodes whose nar list is unchanged keep their place in the nar index. The
// queue is loaded in bulk: entries sized once, each heap filled in place
// and ordered in linear time.
func (p *Planner) Reset(state State) error {
	now := p.now
	p.clear()
	p.now = now
	errs := p.resetNodes(state)

	batch := p.builds[:0]
	for b := range state.Builds() {
		if len(batch) == cap(batch) {
			batch = slices.Grow(batch, len(batch)+1024) // double, not by a quarter
		}
		batch = append(batch, b)
	}
	// Whether a build is blocked is read in a loop of its own: it touches
	// one more block of memory per build (its inputs), and a short loop
	// lets the processor fetch several builds' blocks at once.
	blocked := p.blocked[:0]
	if p.cfg.Strategy == StrategyDerivationOrdered {
		for _, b := range batch {
			blocked = append(blocked, b != nil && slices.ContainsFunc(b.Inputs, missingInput))
		}
	}
	p.entries = slices.Grow(p.entries, len(batch))
	counts := p.counts[:0]
	deferred := 0
	for j, b := range batch {
		if err := validBuild(b); err != nil {
			errs = append(errs, fmt.Errorf("upsert: %w", err))
			continue
		}
		e := p.load(b)
		if len(blocked) > 0 && blocked[j] {
			// indexWaiters counts the missing inputs exactly; until then
			// only "blocked or not" matters.
			e.missing = 1
		}
		switch {
		case e.missing > 0:
			e.where = placeBlocked
		case e.due > p.now:
			e.where = placeDeferred
			deferred++
		default:
			e.where = placeReady
			for int(e.class) >= len(counts) {
				counts = append(counts, 0)
			}
			counts[e.class]++
		}
	}
	clear(batch) // the entries keep the builds; the batch need not
	p.builds, p.counts, p.blocked = batch[:0], counts, blocked[:0]

	p.fillHeaps(deferred)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("reset planner: %w", err)
	}
	return nil
}

// load appends an entry for b, placed nowhere yet.
func (p *Planner) load(b *Build) *entry {
	i := len(p.entries)
	p.entries = p.entries[:i+1] // capacity reserved by Reset
	e := &p.entries[i]
	p.fillEntry(e, b)
	return e
}

// fillHeaps puts the loaded entries in their heaps: the ready heaps share
// one buffer, each class its exact share (a later push past it moves that
// class out), then every heap is ordered once.
func (p *Planner) fillHeaps(deferred int) {
	total := 0
	for _, n := range p.counts {
		total += int(n)
	}
	if cap(p.itemBuf) < total {
		p.itemBuf = make([]heapItem, 0, total+total/8)
	}
	buf := p.itemBuf[:total]
	off := 0
	for ci, n := range p.counts {
		p.classes[ci].ready.items = buf[off : off : off+int(n)]
		off += int(n)
	}
	p.deferred.items = slices.Grow(p.deferred.items[:0], deferred)

	p.pos = slices.Grow(p.pos[:0], len(p.entries))[:len(p.entries)]
	for i := range p.entries {
		e := &p.entries[i]
		switch e.where {
		case placeReady:
			h := &p.classes[e.class].ready
			h.items = append(h.items, heapItem{k: -e.k1, i: int32(i)})
		case placeDeferred:
			p.deferred.items = append(p.deferred.items, heapItem{k: e.due, i: int32(i)})
		default:
			p.pos[i] = -1
		}
	}
	p.deferred.init(p.entries, p.pos)
	for _, c := range p.classes {
		c.ready.init(p.entries, p.pos)
	}
}

// resetNodes reconciles the nodes with state's: unchanged nar lists keep
// their place in the nar index, nodes no longer in state are removed.
func (p *Planner) resetNodes(state State) []error {
	if p.narIDs.len() == 0 {
		holdings := 0
		for n := range state.Nodes() {
			if n != nil {
				holdings += len(n.Nars)
			}
		}
		// No nar is held: start the index afresh. (Its ids and the
		// holders list must start together: a table that kept freed ids
		// would hand one out past the end of a new holders list.)
		// Nars are usually held by a few nodes each.
		p.narIDs = newNarTable()
		p.narIDs.reserve(holdings / 8)
		p.holders = make([][]int32, 0, holdings/8)
	}
	var errs []error
	seen := make([]bool, len(p.nodes))
	for n := range state.Nodes() {
		if err := p.SetNode(n); err != nil {
			errs = append(errs, err)
			continue
		}
		if ni := int(p.nodeByName[n.Name]); ni < len(seen) {
			seen[ni] = true
		}
	}
	for ni, ok := range seen {
		if n := p.nodes[ni]; !ok && n.alive {
			_ = p.RemoveNode(n.n.Name)
		}
	}
	return errs
}
