package scheduler

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestNarTable drives the table with random interns and removals and
// checks every path against a map after each step.
func TestNarTable(t *testing.T) {
	for _, n := range []int{10, 300, 5000} {
		t.Run(fmt.Sprintf("paths=%d", n), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(n), 1))
			tb := newNarTable()
			if n > 100 {
				tb.reserve(n / 4)
			}
			want := map[string]int32{}
			paths := make([]string, n)
			for i := range paths {
				paths[i] = fmt.Sprintf("/nix/store/%032d-p", rng.Uint64())
			}
			for step := range 20 * n {
				path := paths[rng.IntN(n)]
				if rng.IntN(3) == 0 {
					tb.remove(path)
					delete(want, path)
				} else {
					id := tb.intern(path)
					if old, ok := want[path]; ok && old != id {
						t.Fatalf("step %d: %s changed id %d → %d", step, path, old, id)
					}
					want[path] = id
				}
				if tb.len() != len(want) {
					t.Fatalf("step %d: len %d, want %d", step, tb.len(), len(want))
				}
				if step%(n/10+1) != 0 {
					continue
				}
				ids := map[int32]bool{}
				for _, p := range paths {
					id, ok := tb.find(p)
					wid, wok := want[p]
					if ok != wok || ok && id != wid {
						t.Fatalf("step %d: find %s = %d %v, want %d %v", step, p, id, ok, wid, wok)
					}
					if ok {
						if ids[id] {
							t.Fatalf("step %d: id %d given twice", step, id)
						}
						ids[id] = true
					}
				}
			}
		})
	}
}
