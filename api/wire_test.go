package api

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// testdata/server holds answers of a real node (drvmesh node, builder
// nix, building examples/graph.nix), saved as curl got them.
// testdata/api holds what these types write where they deliberately
// differ from it: the contract's started_at and finished_at are null, not
// absent, on a build that has not started or finished.

// TestTypes_GoldenRoundTrip decodes each server answer strictly (a field
// the type lacks fails) and encodes it again as the node does
// (json.Encoder): a struct answer must come out byte for byte, a map
// answer (whose keys the server sorts) with the same content.
func TestTypes_GoldenRoundTrip(t *testing.T) {
	cases := []struct {
		file  string
		want  string // file of the expected encoding; "" for file itself
		exact bool   // byte-exact; else equal as JSON values
		v     any
	}{
		{"status.json", "", true, &Status{}},
		{"nodes.json", "", true, &[]Node{}},
		{"key.json", "", false, &Key{}},
		{"builds.json", "", true, &[]Build{}},
		{"build-failed.json", "", true, &Build{}},
		{"build-queued.json", "api/build-queued.json", true, &Build{}},
		{"build-canceled.json", "api/build-canceled.json", true, &Build{}},
		{"submit-response.json", "", false, &SubmitResponse{}},
		{"cancel-response.json", "", false, &CancelResponse{}},
		{"missing-response.json", "", false, &MissingResponse{}},
		{"upload-response.json", "", false, &NarRecord{}},
		{"import-response.json", "", false, &ImportResponse{}},
		{"error.json", "", false, &ErrorResponse{}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			in := readGolden(t, filepath.Join("server", c.file))
			dec := json.NewDecoder(bytes.NewReader(in))
			dec.DisallowUnknownFields()
			if err := dec.Decode(c.v); err != nil {
				t.Fatalf("decode: %v", err)
			}
			want := in
			if c.want != "" {
				want = readGolden(t, c.want)
			}
			var out bytes.Buffer
			if err := json.NewEncoder(&out).Encode(c.v); err != nil {
				t.Fatalf("encode: %v", err)
			}
			if c.exact {
				if !bytes.Equal(out.Bytes(), want) {
					t.Fatalf("encoded\n%s\nwant\n%s", out.Bytes(), want)
				}
				return
			}
			var got, exp any
			if err := json.Unmarshal(out.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(want, &exp); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, exp) {
				t.Fatalf("encoded\n%s\nwant the same JSON as\n%s", out.Bytes(), want)
			}
		})
	}
}

func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBuild_Decode checks that decoding fills the fields clients read,
// so the round trip above is not carried by empty values.
func TestBuild_Decode(t *testing.T) {
	var bs []Build
	if err := json.Unmarshal(readGolden(t, "server/builds.json"), &bs); err != nil {
		t.Fatal(err)
	}
	if len(bs) != 2 {
		t.Fatalf("%d builds, want 2", len(bs))
	}
	lib := bs[0]
	if lib.State != StateSucceeded || !lib.State.Final() || lib.Node != "n1" || lib.System != "x86_64-linux" {
		t.Errorf("build = %+v", lib)
	}
	if len(lib.Outputs) != 2 || lib.Outputs[0].Name != "out" || lib.Outputs[1].Name != "dev" || lib.Outputs[1].NarSize != 512 {
		t.Errorf("outputs = %+v", lib.Outputs)
	}
	if lib.StartedAt == nil || lib.FinishedAt == nil || !lib.FinishedAt.After(*lib.StartedAt) || lib.CreatedAt.IsZero() {
		t.Errorf("times: created %v started %v finished %v", lib.CreatedAt, lib.StartedAt, lib.FinishedAt)
	}
	if len(lib.Attempts) != 1 || lib.Attempts[0].Result != ResultSucceeded || lib.Attempts[0].FinishedAt.IsZero() {
		t.Errorf("attempts = %+v", lib.Attempts)
	}

	var q Build
	if err := json.Unmarshal(readGolden(t, "server/build-queued.json"), &q); err != nil {
		t.Fatal(err)
	}
	if q.State != StateQueued || q.State.Final() || q.StartedAt != nil || q.FinishedAt != nil {
		t.Errorf("queued build = %+v", q)
	}
	if q.Priority != 5 || q.Tags["ci"] != "main" || q.Retries != 2 || !q.DeferUntil.Equal(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("queued build = %+v", q)
	}

	var f Build
	if err := json.Unmarshal(readGolden(t, "server/build-failed.json"), &f); err != nil {
		t.Fatal(err)
	}
	if f.State != StateFailed || f.Error == "" || len(f.Attempts) != 1 || f.Attempts[0].Result != ResultFailed || f.Attempts[0].Error != f.Error {
		t.Errorf("failed build = %+v", f)
	}
}

// TestBuild_SpecFields: every field of the contract's build object is in the JSON
// of an empty build, which has not started.
func TestBuild_SpecFields(t *testing.T) {
	b, err := json.Marshal(Build{})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "derivation", "system", "state", "priority", "tags", "node", "attempts", "outputs", "created_at", "started_at", "finished_at", "error"} {
		if _, ok := m[k]; !ok {
			t.Errorf("%s is missing from %s", k, b)
		}
	}
	for _, k := range []string{"defer_until", "retries", "failed_nodes", "waiting_for"} {
		if _, ok := m[k]; ok {
			t.Errorf("unset %s is present in %s", k, b)
		}
	}
}

// TestAttempt_Running: a running attempt has no finish time or result,
// as the server writes it.
func TestAttempt_Running(t *testing.T) {
	a := Attempt{Node: "n2", StartedAt: time.Date(2026, 12, 7, 23, 16, 26, 230871781, time.UTC)}
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"node":"n2","started_at":"2026-12-07T23:16:26.230871781Z"}`; string(b) != want {
		t.Fatalf("running attempt = %s, want %s", b, want)
	}
}

func TestNode_SpecFields(t *testing.T) {
	var nodes []Node
	if err := json.Unmarshal(readGolden(t, "server/nodes.json"), &nodes); err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 1 || nodes[0].Status != NodeAlive || nodes[0].Raft != RaftLeader || nodes[0].MaxJobs != 2 || nodes[0].HTTP == "" {
		t.Fatalf("nodes = %+v", nodes)
	}
	b, err := json.Marshal(Node{})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"name", "status", "raft", "systems", "max_jobs", "running", "http"} {
		if _, ok := m[k]; !ok {
			t.Errorf("%s is missing from %s", k, b)
		}
	}
}

func TestStatus_SpecFields(t *testing.T) {
	var st Status
	if err := json.Unmarshal(readGolden(t, "server/status.json"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Node != "n1" || st.Leader != "n1" || st.Term == 0 || st.CommitIndex == 0 || len(st.Voters) != 1 || st.Nonvoters == nil {
		t.Fatalf("status = %+v", st)
	}
	b, err := json.Marshal(Status{})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"node", "leader", "term", "commit_index", "voters", "nonvoters", "queued", "running"} {
		if _, ok := m[k]; !ok {
			t.Errorf("%s is missing from %s", k, b)
		}
	}
}

// TestSubmitRequest_JSON: the request as the CLI has always sent it. An
// absent retries means the mesh's setting to the server, so 0 is sent.
func TestSubmitRequest_JSON(t *testing.T) {
	cases := []struct {
		name string
		req  SubmitRequest
		want string
	}{
		{"defaults", SubmitRequest{Derivations: []string{"/nix/store/a-x.drv"}, Retries: -1},
			`{"derivations":["/nix/store/a-x.drv"],"priority":0,"closure":false,"ignore_if_built":false,"retries":-1}`},
		{"no retries", SubmitRequest{Derivations: []string{"/nix/store/a-x.drv"}, Retries: 0},
			`{"derivations":["/nix/store/a-x.drv"],"priority":0,"closure":false,"ignore_if_built":false,"retries":0}`},
		{"everything", SubmitRequest{
			Derivations: []string{"/nix/store/a-x.drv", "/nix/store/b-y.drv"}, Priority: 7, Tags: map[string]string{"ci": "main"},
			Closure: true, IgnoreIfBuilt: true, DeferUntil: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), Retries: 3},
			`{"derivations":["/nix/store/a-x.drv","/nix/store/b-y.drv"],"priority":7,"tags":{"ci":"main"},"closure":true,"ignore_if_built":true,"defer_until":"2027-01-01T00:00:00Z","retries":3}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := json.Marshal(c.req)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != c.want {
				t.Fatalf("encoded %s, want %s", b, c.want)
			}
			var back SubmitRequest
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, c.req) {
				t.Fatalf("round trip %+v, want %+v", back, c.req)
			}
		})
	}
}

func TestRequests_JSON(t *testing.T) {
	cases := []struct {
		v    any
		want string
	}{
		{CancelRequest{IDs: []string{"a", "b"}}, `{"ids":["a","b"]}`},
		{MissingRequest{Paths: []string{"/nix/store/a-x"}}, `{"paths":["/nix/store/a-x"]}`},
	}
	for _, c := range cases {
		b, err := json.Marshal(c.v)
		if err != nil || string(b) != c.want {
			t.Errorf("Marshal(%T) = %s, %v; want %s", c.v, b, err, c.want)
		}
	}
}
