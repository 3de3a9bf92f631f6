package node

import (
	"encoding/json"
	"io"
	"net/http"
)

// rpcHandler serves node-to-node calls on the cluster port. Every caller
// has already proved, by its certificate, that it is an admitted node.
func (n *Node) rpcHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /rpc/apply", n.handleRPCApply)
	mux.HandleFunc("GET /rpc/index", n.handleRPCIndex)
	mux.HandleFunc("POST /rpc/replicate", n.handleRPCReplicate)
	return mux
}

type indexJSON struct {
	Commit  uint64 `json:"commit"`
	Applied uint64 `json:"applied"`
}

func (n *Node) handleRPCIndex(w http.ResponseWriter, r *http.Request) {
	_, commit, applied := n.raft.Stats()
	writeJSON(w, http.StatusOK, indexJSON{Commit: commit, Applied: applied})
}

// handleRPCReplicate makes this node keep a copy of a nar another holds.
func (n *Node) handleRPCReplicate(w http.ResponseWriter, r *http.Request) {
	var req replicateRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
		apiError(w, http.StatusBadRequest, "bad replicate request: %v", err)
		return
	}
	if err := n.waitApplied(r.Context(), req.Index); err != nil {
		apiError(w, http.StatusServiceUnavailable, "replicate %s: %v", req.HashPart, err)
		return
	}
	if err := n.replicateLocal(r.Context(), req.HashPart); err != nil {
		apiError(w, statusOf(err), "replicate %s: %v", req.HashPart, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"ok": req.HashPart})
}
