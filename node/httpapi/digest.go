package httpapi

import (
	"net/http"
	"sort"
)

// DigestJSON is what GET /api/v1/digest answers: a hash of this node's
// replicated state (consensus.FSM.Digest), the raft index it reflects,
// and, per node, the nars the state records it holds. Replicas that
// applied the same log answer the same digest; the chaos suite compares
// them and counts each nar's holders from it.
type DigestJSON struct {
	Digest       string              `json:"digest"`
	AppliedIndex uint64              `json:"applied_index"`
	Holders      map[string][]string `json:"holders"` // node → hash parts of the nars it holds
}

// digestTries bounds how often the digest is taken again because entries
// were applied while it was being computed.
const digestTries = 5

func (api *API) handleDigest(w http.ResponseWriter, r *http.Request) {
	var out DigestJSON
	for range digestTries {
		_, _, before := api.raft.Stats()
		d, err := api.digest()
		if err != nil {
			apiError(w, api.statusOf(err), "%v", err)
			return
		}
		out = d
		_, _, after := api.raft.Stats()
		out.AppliedIndex = after
		if before == after {
			break
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// digest reads the state's digest and the holders of every nar.
func (api *API) digest() (DigestJSON, error) {
	fsm := api.raft.State()
	d, err := fsm.Digest()
	if err != nil {
		return DigestJSON{}, err
	}
	out := DigestJSON{Digest: d, Holders: map[string][]string{}}
	nodes, err := fsm.Nodes()
	if err != nil {
		return DigestJSON{}, err
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	for _, n := range nodes {
		held, err := fsm.NarsHeldBy(n.Name)
		if err != nil {
			return DigestJSON{}, err
		}
		out.Holders[n.Name] = append([]string{}, held...)
	}
	return out, nil
}
