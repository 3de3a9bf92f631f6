package main

import (
	"slices"
	"testing"
)

func TestUploader_BatchLen(t *testing.T) {
	many := make([]importPath, importBatchPaths+5)
	for i := range many {
		many[i].size = 1000
	}
	big := []importPath{{size: 50 << 20}, {size: 10 << 20}, {size: 10 << 20}, {size: 1}}
	huge := []importPath{{size: 200 << 20}, {size: 1}}
	cases := []struct {
		name  string
		paths []importPath
		want  int
	}{
		{"few small", many[:10], 10},
		{"path limit", many, importBatchPaths},
		{"byte limit", big, 2},
		{"one path over the byte limit goes alone", huge, 1},
		{"one", many[:1], 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := batchLen(c.paths); got != c.want {
				t.Errorf("batchLen = %d, want %d", got, c.want)
			}
		})
	}
}

func TestUploader_RefsFirst(t *testing.T) {
	cases := []struct {
		name  string
		paths []importPath
		want  []string
	}{
		{"already ordered", []importPath{{path: "a"}, {path: "b", refs: []string{"a"}}, {path: "c", refs: []string{"a", "b", "c"}}}, []string{"a", "b", "c"}},
		{"source after its referrer", []importPath{{path: "a", refs: []string{"z"}}, {path: "b"}, {path: "z"}}, []string{"z", "a", "b"}},
		{"refs outside the batch", []importPath{{path: "b", refs: []string{"x", "a"}}, {path: "a", refs: []string{"y"}}}, []string{"a", "b"}},
		{"chain given backwards", []importPath{{path: "c", refs: []string{"b"}}, {path: "b", refs: []string{"a"}}, {path: "a"}}, []string{"a", "b", "c"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			for _, p := range refsFirst(c.paths) {
				got = append(got, p.path)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("refsFirst = %v, want %v", got, c.want)
			}
		})
	}
}
