package narcache

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestSuspects_Order(t *testing.T) {
	hs := []Holder{{ID: "a"}, {ID: "b"}, {ID: "c"}, {ID: "d"}}
	ids := func(hs []Holder) []string {
		var out []string
		for _, h := range hs {
			out = append(out, h.ID)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		mark map[string]error
		past []string // suspected, but long ago
		want []string
	}{
		{name: "none", want: []string{"a", "b", "c", "d"}},
		{name: "failed holders go last, in order",
			mark: map[string]error{"a": ErrPeer, "c": ErrStalled},
			want: []string{"b", "d", "a", "c"}},
		{name: "the caller's context is not the holder's fault",
			mark: map[string]error{"a": context.Canceled, "b": fmt.Errorf("fetch: %w", context.DeadlineExceeded)},
			want: []string{"a", "b", "c", "d"}},
		{name: "suspicion expires",
			mark: map[string]error{"b": ErrHashMismatch}, past: []string{"a"},
			want: []string{"a", "c", "d", "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s suspects
			for id, err := range tc.mark {
				s.mark(id, err)
			}
			for _, id := range tc.past {
				s.mu.Lock()
				if s.until == nil {
					s.until = map[string]time.Time{}
				}
				s.until[id] = time.Now().Add(-time.Second)
				s.mu.Unlock()
			}
			in := slices.Clone(hs)
			if got := ids(s.order(in)); !slices.Equal(got, tc.want) {
				t.Fatalf("order %v, want %v", got, tc.want)
			}
			if !slices.Equal(ids(in), ids(hs)) {
				t.Fatalf("order changed its argument: %v", ids(in))
			}
		})
	}
}
