package main

import (
	"reflect"
	"testing"
)

func TestParseFlags_Interspersed(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		wantPos  []string
		wantJSON bool
		wantDir  string
	}{
		{[]string{"a.drv", "--json"}, []string{"a.drv"}, true, ""},
		{[]string{"--drv-dir", "d", "a.drv", "b.drv"}, []string{"a.drv", "b.drv"}, false, "d"},
		{[]string{"a.drv", "--", "--json"}, []string{"a.drv", "--json"}, false, ""},
	} {
		fs := newFlags("t")
		j := fs.Bool("json", false, "")
		d := fs.String("drv-dir", "", "")
		pos, err := parseFlags(fs, tc.args)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if !reflect.DeepEqual(pos, tc.wantPos) || *j != tc.wantJSON || *d != tc.wantDir {
			t.Errorf("%v: got %v json=%v dir=%q", tc.args, pos, *j, *d)
		}
	}
	if _, err := parseFlags(newFlags("t"), []string{"--nope"}); err == nil {
		t.Error("unknown flag accepted")
	}
}
