package scheduler

import (
	"errors"
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
	freeEntries []int32
	byID        map[string]int32    // built on first need, see indexIDs
	waiters     map[string][]waiter // input drv → builds missing it; see indexWaiters
	idsReady    bool
	waitReady   bool
	deferred    entryHeap
	now         int64 // latest now seen by Plan

	classes    []*class
	classBySys map[string][]int32

	nodes      []*nodeState
	freeNodes  []int32
	nodeByName map[string]int32
	holders    map[string][]int32 // nar path → nodes holding it

	// scratch for Plan, kept to avoid allocating every round
	active  []int32
	popped  []int32
	used    []int32 // nodes given a build this round
	rem     []int32 // by node: free slots left this round (FreeSlots outside Plan)
	touched []int32
	mark    []uint32
	bytes   []int64
	epoch   uint32
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
	key     orderKey
	due     int64 // deferNano
	class   int32
	pos     int32 // position in the heap the entry is in
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
	supports []bool  // by node index
	nodes    []int32 // supporting live nodes with free slots, by (load, name)
	cursor   int     // Plan scratch: nodes[:cursor] have no slot left
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
		epoch:       old.epoch, // mark holds epochs up to this one
		cfg:         old.cfg,
		entries:     old.entries[:0],
		freeEntries: old.freeEntries[:0],
		byID:        old.byID,
		waiters:     old.waiters,
		classBySys:  map[string][]int32{},
		nodeByName:  old.nodeByName,
		holders:     old.holders,
		now:         math.MinInt64,
		deferred:    entryHeap{items: old.deferred.items[:0], key: deferKey, tie: deferTie},
		active:      old.active[:0],
		popped:      old.popped[:0],
		used:        old.used[:0],
		touched:     old.touched[:0],
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
	if p.holders == nil {
		p.holders = map[string][]int32{}
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

// Reset replaces everything the planner holds with state. Invalid builds
// and nodes are skipped and reported together. Build ids must be unique
// (Schedule keeps the last of repeated ids, Reset would keep all); a
// repeated node name replaces the earlier node. The latest now seen is
// kept. The id and input indexes are built on first need (see Prepare).
func (p *Planner) Reset(state State) error {
	now := p.now
	p.clear()
	p.now = now
	if len(p.holders) == 0 {
		holdings := 0
		for n := range state.Nodes() {
			if n != nil {
				holdings += len(n.Nars)
			}
		}
		p.holders = make(map[string][]int32, holdings)
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
	for b := range state.Builds() {
		if err := p.upsert(b, true); err != nil {
			errs = append(errs, err)
		}
	}
	p.deferred.init(p.entries)
	for _, c := range p.classes {
		c.ready.init(p.entries)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("reset planner: %w", err)
	}
	return nil
}

// Upsert adds a queued build or replaces the one with the same id. Its
// Inputs' Available flags are taken as the truth at this moment.
func (p *Planner) Upsert(b *Build) error {
	return p.upsert(b, false)
}

func (p *Planner) upsert(b *Build, bulk bool) error {
	if err := validBuild(b); err != nil {
		return fmt.Errorf("upsert: %w", err)
	}
	if !bulk {
		p.indexIDs()
		if old, ok := p.byID[b.ID]; ok {
			p.drop(old)
		}
	}
	var i int32
	if n := len(p.freeEntries); n > 0 {
		i = p.freeEntries[n-1]
		p.freeEntries = p.freeEntries[:n-1]
	} else {
		i = int32(len(p.entries))
		p.entries = append(p.entries, entry{})
	}
	e := &p.entries[i]
	*e = entry{
		b:     b,
		key:   keyOf(b, p.cfg.AgeStep),
		due:   deferNano(b),
		class: p.classOf(b),
		pos:   -1,
		gen:   e.gen + 1,
	}
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
	p.settle(i, bulk)
	return nil
}

// settle puts an entry that is in no heap where it belongs now.
func (p *Planner) settle(i int32, bulk bool) {
	e := &p.entries[i]
	var h *entryHeap
	switch {
	case e.missing > 0:
		e.where = placeBlocked
		return
	case e.due > p.now:
		e.where, h = placeDeferred, &p.deferred
	default:
		e.where, h = placeReady, &p.classes[e.class].ready
	}
	if bulk {
		h.appendRaw(p.entries, i)
	} else {
		h.push(p.entries, i)
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
		p.deferred.remove(p.entries, int(e.pos))
	case placeReady:
		p.classes[e.class].ready.remove(p.entries, int(e.pos))
	}
	if p.idsReady {
		delete(p.byID, e.b.ID)
	}
	*e = entry{gen: e.gen + 1, pos: -1}
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
			p.settle(w.idx, false)
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
	for _, ci := range p.classBySys[b.System] {
		if sameSet(p.classes[ci].probe.Features, b.Features) {
			return ci
		}
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
	p.classBySys[b.System] = append(p.classBySys[b.System], ci)
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
