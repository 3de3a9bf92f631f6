package api

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestBuildState_FinalValid(t *testing.T) {
	cases := []struct {
		state        BuildState
		valid, final bool
	}{
		{StateQueued, true, false},
		{StateScheduled, true, false},
		{StateBuilding, true, false},
		{StateSucceeded, true, true},
		{StateFailed, true, true},
		{StateCanceled, true, true},
		{"", false, false},
		{"Succeeded", false, false},
		{"cancelled", false, false},
		{"done", false, false},
	}
	for _, c := range cases {
		t.Run(string(c.state), func(t *testing.T) {
			if got := c.state.Valid(); got != c.valid {
				t.Errorf("Valid() = %v, want %v", got, c.valid)
			}
			if got := c.state.Final(); got != c.final {
				t.Errorf("Final() = %v, want %v", got, c.final)
			}
		})
	}
}

func TestBuildStates_List(t *testing.T) {
	want := []string{"queued", "scheduled", "building", "succeeded", "failed", "canceled"}
	if len(BuildStates) != len(want) {
		t.Fatalf("BuildStates has %d states, want %d", len(BuildStates), len(want))
	}
	for i, s := range BuildStates {
		if string(s) != want[i] || !s.Valid() {
			t.Errorf("BuildStates[%d] = %q (valid %v), want %q", i, s, s.Valid(), want[i])
		}
	}
}

func TestParseBuildState(t *testing.T) {
	for _, s := range BuildStates {
		got, err := ParseBuildState(string(s))
		if err != nil || got != s {
			t.Errorf("ParseBuildState(%q) = %q, %v; want %q", s, got, err, s)
		}
	}
	for _, s := range []string{"", "QUEUED", " queued", "running", "cancelled"} {
		got, err := ParseBuildState(s)
		if !errors.Is(err, ErrUnknownState) || got != "" {
			t.Errorf("ParseBuildState(%q) = %q, %v; want ErrUnknownState", s, got, err)
		}
	}
}

func TestBuildState_JSON(t *testing.T) {
	b, err := json.Marshal(StateBuilding)
	if err != nil || string(b) != `"building"` {
		t.Fatalf("Marshal(StateBuilding) = %s, %v", b, err)
	}
	var s BuildState
	if err := json.Unmarshal([]byte(`"canceled"`), &s); err != nil || s != StateCanceled || !s.Final() {
		t.Fatalf("Unmarshal canceled = %q, %v", s, err)
	}
}
