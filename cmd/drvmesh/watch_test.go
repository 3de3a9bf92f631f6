package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drvmesh/drvmesh/api"
)

// TestWatchBuilds_Final: watch follows each build through its states,
// reports every change once, and stops when all are final.
func TestWatchBuilds_Final(t *testing.T) {
	steps := map[string][]api.BuildState{
		"a": {api.StateQueued, api.StateBuilding, api.StateSucceeded},
		"b": {api.StateScheduled, api.StateFailed},
	}
	var mu sync.Mutex
	polls := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimPrefix(r.URL.Path, "/api/v1/builds/")
		mu.Lock()
		s := steps[id]
		st := s[min(polls[id], len(s)-1)]
		polls[id]++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":"` + id + `","state":"` + string(st) + `","node":"n1","created_at":"2026-12-07T23:16:26Z"}`))
	}))
	defer srv.Close()
	c := &client{base: srv.URL, http: srv.Client()}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var seen []string
	final, err := watchBuilds(ctx, c, []string{"a", "b"}, func(b *api.Build) {
		seen = append(seen, b.ID+"="+string(b.State))
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(final) != 2 || final[0].State != api.StateSucceeded || final[1].State != api.StateFailed {
		t.Fatalf("final = %+v", final)
	}
	want := "a=queued b=scheduled a=building b=failed a=succeeded"
	if got := strings.Join(seen, " "); got != want {
		t.Errorf("changes %q, want %q", got, want)
	}
}

func TestRunBuilds_BadState(t *testing.T) {
	err := runBuilds([]string{"--state", "done", "--server", "http://127.0.0.1:1"})
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "canceled") {
		t.Fatalf("runBuilds --state done = %v, want a usage error naming the states", err)
	}
}
