package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/drvmesh/drvmesh/consensus"
)

func TestAPI_Digest(t *testing.T) {
	api, r := newTestAPI(t)
	h := api.Handler()
	if _, err := r.ApplyAndCatchUp(context.Background(), &consensus.SetSettings{Settings: consensus.Settings{AdminTokenHash: "hash:tok"}}); err != nil {
		t.Fatal(err)
	}
	get := func(t *testing.T) DigestJSON {
		t.Helper()
		code, body := do(t, h, http.MethodGet, "/api/v1/digest", "tok", "")
		if code != http.StatusOK {
			t.Fatalf("status %d (%s), want 200", code, body)
		}
		var d DigestJSON
		if err := json.Unmarshal([]byte(body), &d); err != nil {
			t.Fatalf("decode %s: %v", body, err)
		}
		return d
	}

	t.Run("needs the admin token", func(t *testing.T) {
		if code, body := do(t, h, http.MethodGet, "/api/v1/digest", "", ""); code != http.StatusUnauthorized {
			t.Fatalf("status %d (%s), want 401", code, body)
		}
	})
	t.Run("answers the state's digest and applied index", func(t *testing.T) {
		d := get(t)
		want, err := r.fsm.Digest()
		if err != nil {
			t.Fatal(err)
		}
		if d.Digest != want || d.AppliedIndex != r.index {
			t.Fatalf("got %q at %d, want %q at %d", d.Digest, d.AppliedIndex, want, r.index)
		}
	})
	t.Run("a write changes the digest", func(t *testing.T) {
		before := get(t)
		b := consensus.Build{ID: consensus.NewBuildID(time.Now()), Derivation: "/nix/store/00000000000000000000000000000000-a.drv", System: "x86_64-linux", State: consensus.StateQueued}
		if _, err := r.ApplyAndCatchUp(context.Background(), &consensus.SubmitBuilds{Builds: []consensus.Build{b}}); err != nil {
			t.Fatal(err)
		}
		after := get(t)
		if after.Digest == before.Digest || after.AppliedIndex != before.AppliedIndex+1 {
			t.Fatalf("after a write: %q at %d, before: %q at %d", after.Digest, after.AppliedIndex, before.Digest, before.AppliedIndex)
		}
	})
}
