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
	n.fwd.Routes(mux)
	mux.HandleFunc("POST /rpc/replicate", n.handleRPCReplicate)
	return mux
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
