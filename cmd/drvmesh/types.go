package main

import "time"

// The JSON shapes of SPEC, as the CLI reads them. The CLI talks to nodes
// over HTTP only and shares no types with the node's internals.

type buildOutput struct {
	Name    string `json:"name"`
	Path    string `json:"path"`
	NarHash string `json:"nar_hash"`
	NarSize int64  `json:"nar_size"`
}

type attempt struct {
	Node       string    `json:"node"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	Result     string    `json:"result"`
	Error      string    `json:"error,omitempty"`
}

type build struct {
	ID         string            `json:"id"`
	Derivation string            `json:"derivation"`
	System     string            `json:"system"`
	State      string            `json:"state"`
	Priority   int               `json:"priority"`
	Tags       map[string]string `json:"tags"`
	Node       string            `json:"node"`
	Attempts   []attempt         `json:"attempts"`
	Outputs    []buildOutput     `json:"outputs"`
	CreatedAt  time.Time         `json:"created_at"`
	StartedAt  *time.Time        `json:"started_at"`
	FinishedAt *time.Time        `json:"finished_at"`
	Error      string            `json:"error"`
}

func (b *build) done() bool {
	return b.State == "succeeded" || b.State == "failed" || b.State == "canceled"
}

type statusJSON struct {
	Node        string   `json:"node"`
	Leader      string   `json:"leader"`
	Term        uint64   `json:"term"`
	CommitIndex uint64   `json:"commit_index"`
	Voters      []string `json:"voters"`
	Nonvoters   []string `json:"nonvoters"`
	Queued      int      `json:"queued"`
	Running     int      `json:"running"`
}

type nodeJSON struct {
	Name     string   `json:"name"`
	Status   string   `json:"status"`
	Raft     string   `json:"raft"`
	Systems  []string `json:"systems"`
	MaxJobs  int      `json:"max_jobs"`
	Running  int      `json:"running"`
	HTTP     string   `json:"http"`
	Features []string `json:"features,omitempty"`
	Load     float64  `json:"load"`
	FreeDisk uint64   `json:"free_disk"`
}
