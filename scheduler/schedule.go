package scheduler

import (
	"slices"
	"time"
)

// Schedule plans one round from scratch: it is the reference the Planner
// must agree with, written for clarity rather than speed (it sorts every
// ready build and scans every node). Invalid builds and nodes are skipped;
// when an id or a name repeats, the last one wins. cfg must be valid.
func Schedule(state State, cfg Config, now time.Time) Plan {
	nodes, free := scheduleNodes(state)
	holds := make([]map[string]bool, len(nodes))
	for i, n := range nodes {
		holds[i] = make(map[string]bool, len(n.Nars))
		for _, p := range n.Nars {
			holds[i][p] = true
		}
	}
	total := 0
	for _, f := range free {
		total += f
	}

	type queued struct {
		b   *Build
		key orderKey
	}
	last := map[string]*Build{}
	for b := range state.Builds() {
		if validBuild(b) == nil {
			last[b.ID] = b
		}
	}
	chain := buildCheckers(cfg)
	var ready []queued
	for _, b := range last {
		if readyAll(chain, b, now) {
			ready = append(ready, queued{b: b, key: keyOf(b, cfg.AgeStep)})
		}
	}
	slices.SortFunc(ready, func(x, y queued) int {
		if x.key.before(y.key) {
			return -1
		}
		return 1
	})

	var plan Plan
	for _, q := range ready {
		if total == 0 {
			break
		}
		best, bestC := -1, candidate{}
		for i, n := range nodes {
			if free[i] == 0 || !feasibleAll(q.b, n) {
				continue
			}
			c := candidate{
				failed: slices.Contains(q.b.FailedOn, n.Name),
				load:   loadOf(n),
				name:   n.Name,
			}
			for _, nar := range q.b.InputNars {
				if holds[i][nar.Path] {
					c.bytes += nar.Size
				}
			}
			if best < 0 || c.better(bestC) {
				best, bestC = i, c
			}
		}
		if best < 0 {
			continue
		}
		free[best]--
		total--
		plan.Assignments = append(plan.Assignments, Assignment{Build: q.b.ID, Node: nodes[best].Name})
	}
	return plan
}

// scheduleNodes returns the valid nodes, the last of each name, and their
// free slots.
func scheduleNodes(state State) ([]*Node, []int) {
	idx := map[string]int{}
	var nodes []*Node
	for n := range state.Nodes() {
		if validNode(n) != nil {
			continue
		}
		if i, ok := idx[n.Name]; ok {
			nodes[i] = n
			continue
		}
		idx[n.Name] = len(nodes)
		nodes = append(nodes, n)
	}
	free := make([]int, len(nodes))
	for i, n := range nodes {
		free[i] = max(n.FreeSlots, 0)
	}
	return nodes, free
}
