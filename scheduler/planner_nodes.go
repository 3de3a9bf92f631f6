package scheduler

import (
	"cmp"
	"fmt"
	"slices"
)

// SetNode adds a node or replaces the one with the same name: systems,
// features, free slots, load and held nars. Its cost grows with the number
// of nars the node holds; SetCapacity is the cheap path for slot and load
// changes.
func (p *Planner) SetNode(n *Node) error {
	if err := validNode(n); err != nil {
		return fmt.Errorf("set node: %w", err)
	}
	ni, ok := p.nodeByName[n.Name]
	if ok {
		p.unlist(ni)
	} else {
		ni = p.newNode(n.Name)
	}
	ns := p.nodes[ni]
	ns.n = *n
	ns.n.Nars = nil
	ns.n.Systems = slices.Clone(n.Systems)
	ns.n.Features = slices.Clone(n.Features)
	ns.n.FreeSlots = max(n.FreeSlots, 0)
	ns.load = loadOf(n)
	p.loads[ni] = ns.load
	p.rem[ni] = int32(ns.n.FreeSlots)
	p.setNars(ni, n.Nars)
	for _, c := range p.classes {
		c.supports[ni] = feasibleAll(&c.probe, &ns.n)
	}
	p.list(ni)
	return nil
}

// SetCapacity changes a node's free slots and load, leaving the rest.
func (p *Planner) SetCapacity(name string, freeSlots int, load float64) error {
	ni, ok := p.nodeByName[name]
	if !ok {
		return fmt.Errorf("set capacity of %s: %w", name, ErrUnknownNode)
	}
	ns := p.nodes[ni]
	p.unlist(ni)
	ns.n.FreeSlots = max(freeSlots, 0)
	ns.n.Load = load
	ns.load = loadOf(&ns.n)
	p.loads[ni] = ns.load
	p.rem[ni] = int32(ns.n.FreeSlots)
	p.list(ni)
	return nil
}

// AddNar records that node holds the nar of path.
func (p *Planner) AddNar(node, path string) error {
	ni, ok := p.nodeByName[node]
	if !ok {
		return fmt.Errorf("add nar to %s: %w", node, ErrUnknownNode)
	}
	id := p.narID(path)
	if !slices.Contains(p.holders[id], ni) {
		p.nodes[ni].nars = append(p.nodes[ni].nars, path)
		p.holders[id] = append(p.holders[id], ni)
	}
	return nil
}

// RemoveNar records that node no longer holds the nar of path.
func (p *Planner) RemoveNar(node, path string) error {
	ni, ok := p.nodeByName[node]
	if !ok {
		return fmt.Errorf("remove nar from %s: %w", node, ErrUnknownNode)
	}
	if id, ok := p.narIDs.find(path); ok && slices.Contains(p.holders[id], ni) {
		ns := p.nodes[ni]
		ns.nars = slices.DeleteFunc(ns.nars, func(x string) bool { return x == path })
		p.unhold(path, ni)
	}
	return nil
}

// RemoveNode forgets a node.
func (p *Planner) RemoveNode(name string) error {
	ni, ok := p.nodeByName[name]
	if !ok {
		return fmt.Errorf("remove node %s: %w", name, ErrUnknownNode)
	}
	p.unlist(ni)
	p.setNars(ni, nil)
	for _, c := range p.classes {
		c.supports[ni] = false
	}
	delete(p.nodeByName, name)
	*p.nodes[ni] = nodeState{}
	p.rem[ni] = 0
	p.freeNodes = append(p.freeNodes, ni)
	return nil
}

func (p *Planner) newNode(name string) int32 {
	var ni int32
	if k := len(p.freeNodes); k > 0 {
		ni = p.freeNodes[k-1]
		p.freeNodes = p.freeNodes[:k-1]
	} else {
		ni = int32(len(p.nodes))
		p.nodes = append(p.nodes, &nodeState{})
		p.mark = append(p.mark, 0)
		p.bytes = append(p.bytes, 0)
		p.rem = append(p.rem, 0)
		p.loads = append(p.loads, 0)
		p.ranks = append(p.ranks, 0)
		for _, c := range p.classes {
			c.supports = append(c.supports, false)
		}
	}
	*p.nodes[ni] = nodeState{alive: true}
	p.nodeByName[name] = ni
	p.ranksStale = true
	return ni
}

// setNars makes the node's holdings exactly paths (repeats ignored) and
// updates the holders index. A node's first list costs one append per path;
// a changed list costs a set difference.
func (p *Planner) setNars(ni int32, paths []string) {
	ns := p.nodes[ni]
	if slices.Equal(ns.nars, paths) {
		return
	}
	old := ns.nars
	ns.nars = slices.Clone(paths)
	if len(old) == 0 {
		p.touchSum += touchPaths(paths)
		for _, path := range paths {
			// Within one call a repeated path finds ni last in its list.
			id := p.narID(path)
			if hs := p.holders[id]; len(hs) == 0 || hs[len(hs)-1] != ni {
				p.holders[id] = append(hs, ni)
			}
		}
		return
	}
	was := make(map[string]bool, len(old))
	for _, path := range old {
		was[path] = true
	}
	now := make(map[string]bool, len(paths))
	for _, path := range paths {
		if !now[path] {
			now[path] = true
			if !was[path] {
				id := p.narID(path)
				p.holders[id] = append(p.holders[id], ni)
			}
		}
	}
	for path := range was {
		if !now[path] {
			p.unhold(path, ni)
		}
	}
}

// touchPaths reads one byte at each end of every path and returns their
// sum. In a loop this short many memory reads are in flight at once, so
// hashing the paths next finds them in cache instead of waiting for each.
func touchPaths(paths []string) byte {
	var sum byte
	for _, path := range paths {
		if n := len(path); n > 0 {
			sum += path[0] + path[n-1]
		}
	}
	return sum
}

// narID returns the id of a held nar path, giving it one if it has none.
// Ids index Planner.holders; a path no node holds gives its id back.
func (p *Planner) narID(path string) int32 {
	id := p.narIDs.intern(path)
	if int(id) == len(p.holders) {
		p.holders = append(p.holders, nil)
	}
	return id
}

func (p *Planner) unhold(path string, ni int32) {
	id, ok := p.narIDs.find(path)
	if !ok {
		return
	}
	hs := p.holders[id]
	if i := slices.Index(hs, ni); i >= 0 {
		hs = slices.Delete(hs, i, i+1)
	}
	p.holders[id] = hs
	if len(hs) == 0 {
		p.narIDs.remove(path)
	}
}

// rankNodes numbers the live nodes in name order, so that pick breaks
// ties between nodes without comparing names. Node names change only when
// nodes join, so this runs once after a join.
func (p *Planner) rankNodes() {
	if !p.ranksStale {
		return
	}
	p.ranksStale = false
	live := make([]int32, 0, len(p.nodes))
	for ni, n := range p.nodes {
		if n.alive {
			live = append(live, int32(ni))
		}
	}
	slices.SortFunc(live, func(a, b int32) int { return cmp.Compare(p.nodes[a].n.Name, p.nodes[b].n.Name) })
	for r, ni := range live {
		p.ranks[ni] = int32(r)
	}
}

// before is the node order of cmpNodes from the dense arrays; the ranks
// must be fresh (rankNodes).
func (p *Planner) before(a, b int32) bool {
	if la, lb := p.loads[a], p.loads[b]; la != lb {
		return la < lb
	}
	return p.ranks[a] < p.ranks[b]
}

// cmpNodes orders a class's node list: least load, then smallest name.
func (p *Planner) cmpNodes(a, b int32) int {
	na, nb := p.nodes[a], p.nodes[b]
	if c := cmp.Compare(na.load, nb.load); c != 0 {
		return c
	}
	return cmp.Compare(na.n.Name, nb.n.Name)
}

// list inserts a node with free slots into the lists of its classes.
func (p *Planner) list(ni int32) {
	if p.nodes[ni].n.FreeSlots == 0 {
		return
	}
	for _, c := range p.classes {
		if c.supports[ni] {
			i, _ := slices.BinarySearchFunc(c.nodes, ni, p.cmpNodes)
			c.nodes = slices.Insert(c.nodes, i, ni)
		}
	}
}

// unlist removes a node from the lists of its classes; call it before
// changing the node's load, slots or support.
func (p *Planner) unlist(ni int32) {
	if p.nodes[ni].n.FreeSlots == 0 {
		return
	}
	for _, c := range p.classes {
		if !c.supports[ni] {
			continue
		}
		i, found := slices.BinarySearchFunc(c.nodes, ni, p.cmpNodes)
		if found && c.nodes[i] == ni {
			c.nodes = slices.Delete(c.nodes, i, i+1)
		}
	}
}
