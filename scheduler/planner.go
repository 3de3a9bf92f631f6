package scheduler

import (
	"fmt"
	"math"
	"slices"
)

// Planner is the incremental scheduler the leader keeps between rounds. It
// holds the queue split into classes (system + required features), each a
// heap ordered by time-invariant effective priority; blocked builds wait
// outside any heap until MarkAvailable releases them; deferred builds wait in
// a heap ordered by due time. Nodes are indexed per class, sorted by load,
// and nars by the nodes holding them. See DESIGN.md.
//
// Plan(now) gives the same plan as Schedule over the same data, provided now
// never decreases between calls. A Planner keeps the *Build values it is
// given: callers must not modify a Build after passing it (pass a new one to
// Upsert instead). A Planner is not safe for concurrent use.
type Planner struct {
	cfg Config

	entries     []entry
	pos         []int32 // by entry: position in the heap it is in, or -1
	freeEntries []int32
	byID        map[string]int32    // built on first need, see indexIDs
	waiters     map[string][]waiter // input drv → builds missing it; see indexWaiters
	idsReady    bool
	waitReady   bool
	deferred    entryHeap
	now         int64 // latest now seen by Plan

	classes []*class
	systems []system // a farm has a handful: scanned, not hashed

	nodes      []*nodeState
	freeNodes  []int32
	nodeByName map[string]int32
	narIDs     narTable  // held nar path → id
	holders    [][]int32 // by nar id: nodes holding it
	loads      []float64 // by node: loadOf, dense for pick
	ranks      []int32   // by node: order of live names, for pick
	ranksStale bool      // a node was added since ranks were set

	// scratch for Reset and Plan, kept to avoid allocating every round
	builds   []*Build // Reset scratch
	counts   []int32
	blocked  []bool
	itemBuf  []heapItem
	active   []int32
	used     []int32 // nodes given a build this round
	rem      []int32 // by node: free slots left this round (FreeSlots outside Plan)
	touched  []int32
	batch    []*Build // builds taken ahead of placing them (see Plan)
	batchIdx []int32  // their entries
	flat     []Nar    // their input nars, build q's at off[q]:off[q+1]
	off      []int32
	ids      []int32 // nar id of each of flat, -1 if held nowhere
	touchSum byte    // see resolve
	mark     []uint32
	bytes    []int64
	epoch    uint32
}

type place uint8

const (
	placeFree place = iota
	placeBlocked
	placeDeferred
	placeReady
)

type entry struct {
	b       *Build
	k1, k2  int64 // orderKey without the id, which is b.ID
	due     int64 // deferNano
	class   int32
	missing int32 // unavailable inputs (derivation-ordered only)
	gen     uint32
	where   place
}

// waiter names an entry by index and generation, so a stale waiter left by
// a removed build is recognised after the index is reused.
type waiter struct {
	idx int32
	gen uint32
}

// class is the set of builds sharing a system and required features; they
// can run on exactly the same nodes.
type class struct {
	probe    Build // System and Features of the class
	ready    entryHeap
	front    front   // Plan scratch: lists ready in order without popping
	supports []bool  // by node index
	nodes    []int32 // supporting live nodes with free slots, by (load, name)
	cursor   int     // Plan scratch: nodes[:cursor] have no slot left
}

// system lists the classes of one system.
type system struct {
	name    string
	classes []int32
}

type nodeState struct {
	n     Node     // Nars is nil; holdings live in nars and Planner.holders
	nars  []string // held paths, in the order given
	load  float64
	alive bool
}

// Stats counts what a Planner holds.
type Stats struct {
	Queued, Ready, Blocked, Deferred int
	Nodes, FreeSlots, Classes        int
}

// NewPlanner returns an empty Planner.
func NewPlanner(cfg Config) (*Planner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new planner: %w", err)
	}
	p := &Planner{cfg: cfg}
	p.clear()
	return p, nil
}

// clear empties the queue, keeping allocated memory for reuse. Nodes stay:
// Reset reconciles them, so that unchanged nar holdings are not indexed
// again.
func (p *Planner) clear() {
	old := *p
	*p = Planner{
		nodes:       old.nodes,
		freeNodes:   old.freeNodes,
		mark:        old.mark,
		bytes:       old.bytes,
		rem:         old.rem,
		loads:       old.loads,
		ranks:       old.ranks,
		ranksStale:  old.ranksStale,
		epoch:       old.epoch, // mark holds epochs up to this one
		cfg:         old.cfg,
		entries:     old.entries[:0],
		pos:         old.pos[:0],
		builds:      old.builds,
		batch:       old.batch,
		batchIdx:    old.batchIdx,
		flat:        old.flat,
		off:         old.off,
		ids:         old.ids,
		counts:      old.counts,
		blocked:     old.blocked,
		itemBuf:     old.itemBuf,
		freeEntries: old.freeEntries[:0],
		byID:        old.byID,
		waiters:     old.waiters,
		nodeByName:  old.nodeByName,
		narIDs:      old.narIDs,
		holders:     old.holders,
		now:         math.MinInt64,
		deferred:    entryHeap{items: old.deferred.items[:0], key: deferKey, tie: deferTie},
		active:      old.active[:0],
		used:        old.used[:0],
		touched:     old.touched, // pick needs it as long as the nodes
	}
	if p.byID == nil {
		p.byID = map[string]int32{}
	}
	clear(p.byID)
	if p.waiters == nil {
		p.waiters = map[string][]waiter{}
	}
	clear(p.waiters)
	if p.nodeByName == nil {
		p.nodeByName = map[string]int32{}
	}
	if p.narIDs.slots == nil {
		p.narIDs = newNarTable()
	}
}

// indexIDs builds the id index; Reset leaves it for the first call that
// needs it, so a full round does not pay for it.
func (p *Planner) indexIDs() {
	if p.idsReady {
		return
	}
	p.idsReady = true
	for i := range p.entries {
		if e := &p.entries[i]; e.where != placeFree {
			p.byID[e.b.ID] = int32(i)
		}
	}
}

// indexWaiters builds the index of blocked builds by missing input; like
// indexIDs it is built on first need.
func (p *Planner) indexWaiters() {
	if p.waitReady {
		return
	}
	p.waitReady = true
	for i := range p.entries {
		if e := &p.entries[i]; e.where == placeBlocked {
			p.addWaiters(int32(i))
		}
	}
}

// addWaiters counts the entry's missing inputs and indexes it under each.
func (p *Planner) addWaiters(i int32) {
	e := &p.entries[i]
	e.missing = 0
	for _, in := range e.b.Inputs {
		if !in.Available {
			e.missing++
			p.waiters[in.Drv] = append(p.waiters[in.Drv], waiter{idx: i, gen: e.gen})
		}
	}
}

func missingInput(in Input) bool { return !in.Available }

// Prepare builds now the indexes that Reset leaves for first use (by id,
// and of blocked builds by missing input), so that the first Remove,
// Upsert or MarkAvailable after Reset is as fast as later ones.
func (p *Planner) Prepare() {
	p.indexIDs()
	if p.cfg.Strategy == StrategyDerivationOrdered {
		p.indexWaiters()
	}
}

// Config returns the planner's configuration.
func (p *Planner) Config() Config { return p.cfg }

// Upsert adds a queued build or replaces the one with the same id. Its
// Inputs' Available flags are taken as the truth at this moment.
func (p *Planner) Upsert(b *Build) error {
	return p.upsert(b)
}

func (p *Planner) upsert(b *Build) error {
	if err := validBuild(b); err != nil {
		return fmt.Errorf("upsert: %w", err)
	}
	p.indexIDs()
	if old, ok := p.byID[b.ID]; ok {
		p.drop(old)
	}
	var i int32
	if n := len(p.freeEntries); n > 0 {
		i = p.freeEntries[n-1]
		p.freeEntries = p.freeEntries[:n-1]
	} else {
		i = int32(len(p.entries))
		p.entries = append(p.entries, entry{})
		p.pos = append(p.pos, -1)
	}
	e := &p.entries[i]
	p.fillEntry(e, b)
	if p.cfg.Strategy == StrategyDerivationOrdered {
		if p.waitReady {
			p.addWaiters(i)
		} else if slices.ContainsFunc(b.Inputs, missingInput) {
			// indexWaiters counts the missing inputs exactly; until then
			// only "blocked or not" matters, and the first one tells.
			e.missing = 1
		}
	}
	if p.idsReady {
		p.byID[b.ID] = i
	}
	p.settle(i)
	return nil
}

// settle puts an entry that is in no heap where it belongs now.
func (p *Planner) settle(i int32) {
	e := &p.entries[i]
	switch {
	case e.missing > 0:
		e.where = placeBlocked
	case e.due > p.now:
		e.where = placeDeferred
		p.deferred.push(p.entries, p.pos, i)
	default:
		e.where = placeReady
		p.classes[e.class].ready.push(p.entries, p.pos, i)
	}
}

// Remove drops a build from the queue (scheduled, canceled or gone).
func (p *Planner) Remove(id string) error {
	p.indexIDs()
	i, ok := p.byID[id]
	if !ok {
		return fmt.Errorf("remove %s: %w", id, ErrUnknownBuild)
	}
	p.drop(i)
	return nil
}

func (p *Planner) drop(i int32) {
	e := &p.entries[i]
	switch e.where {
	case placeDeferred:
		p.deferred.remove(p.entries, p.pos, int(p.pos[i]))
	case placeReady:
		p.classes[e.class].ready.remove(p.entries, p.pos, int(p.pos[i]))
	}
	if p.idsReady {
		delete(p.byID, e.b.ID)
	}
	*e = entry{gen: e.gen + 1}
	p.pos[i] = -1
	p.freeEntries = append(p.freeEntries, i)
}

// MarkAvailable records that the outputs of derivation drv are now
// available in the mesh, releasing the queued builds that waited only on
// it. It returns how many builds it released. The planner does not remember
// drv for builds upserted later: their Inputs must say so themselves.
func (p *Planner) MarkAvailable(drv string) int {
	p.indexWaiters()
	ws, ok := p.waiters[drv]
	if !ok {
		return 0
	}
	delete(p.waiters, drv)
	released := 0
	for _, w := range ws {
		e := &p.entries[w.idx]
		if e.gen != w.gen || e.where != placeBlocked {
			continue
		}
		if e.missing--; e.missing == 0 {
			p.settle(w.idx)
			released++
		}
	}
	return released
}

// Has reports whether the planner holds build id.
func (p *Planner) Has(id string) bool {
	p.indexIDs()
	_, ok := p.byID[id]
	return ok
}

// Stats counts the queue and the nodes.
func (p *Planner) Stats() Stats {
	s := Stats{Queued: len(p.entries) - len(p.freeEntries), Deferred: p.deferred.len(), Classes: len(p.classes)}
	for _, c := range p.classes {
		s.Ready += c.ready.len()
	}
	s.Blocked = s.Queued - s.Ready - s.Deferred
	for _, n := range p.nodes {
		if n.alive {
			s.Nodes++
			s.FreeSlots += n.n.FreeSlots
		}
	}
	return s
}

// classOf returns the class of b's system and features, creating it.
// Classes are found per system by comparing feature sets, which allocates
// nothing for a known class.
func (p *Planner) classOf(b *Build) int32 {
	si := slices.IndexFunc(p.systems, func(s system) bool { return s.name == b.System })
	if si >= 0 {
		for _, ci := range p.systems[si].classes {
			if sameSet(p.classes[ci].probe.Features, b.Features) {
				return ci
			}
		}
	} else {
		si = len(p.systems)
		p.systems = append(p.systems, system{name: b.System})
	}
	var feats []string
	if len(b.Features) > 0 {
		feats = slices.Clone(b.Features)
		slices.Sort(feats)
		feats = slices.Compact(feats)
	}
	c := &class{probe: Build{System: b.System, Features: feats}}
	c.ready = newReadyHeap()
	c.supports = make([]bool, len(p.nodes))
	for ni, n := range p.nodes {
		if n.alive && feasibleAll(&c.probe, &n.n) {
			c.supports[ni] = true
			if n.n.FreeSlots > 0 {
				c.nodes = append(c.nodes, int32(ni))
			}
		}
	}
	slices.SortFunc(c.nodes, p.cmpNodes)
	ci := int32(len(p.classes))
	p.classes = append(p.classes, c)
	p.systems[si].classes = append(p.systems[si].classes, ci)
	return ci
}

// sameSet reports whether sorted unique set holds exactly the strings of
// fs (which may repeat or be unsorted).
func sameSet(set, fs []string) bool {
	if len(fs) < len(set) {
		return false
	}
	for _, f := range fs {
		if _, found := slices.BinarySearch(set, f); !found {
			return false
		}
	}
	for _, f := range set {
		if !slices.Contains(fs, f) {
			return false
		}
	}
	return true
}

// fillEntry makes e the entry of b, keeping e's generation count going.
func (p *Planner) fillEntry(e *entry, b *Build) {
	k := keyOf(b, p.cfg.AgeStep)
	*e = entry{
		b:     b,
		k1:    k.k1,
		k2:    k.k2,
		due:   deferNano(b),
		class: p.classOf(b),
		gen:   e.gen + 1,
	}
}
