package node

import (
	"net/http"
	"sync/atomic"
)

// rpcHandler serves node-to-node calls on the cluster port. Every caller
// has already proved, by a certificate of the mesh CA, that it holds a
// node identity; a forwarded write is then authorized as the node that
// certificate and its record name (cluster.Forwarder).
// Forwarded writes and index queries are served as soon as raft runs;
// the rooms' routes join once startRooms made them (rooms), and answer
// 503 until then.
func (n *Node) rpcHandler(rooms *lateHandler) http.Handler {
	mux := http.NewServeMux()
	n.fwd.Routes(mux)
	mux.Handle("/rpc/", rooms)
	return mux
}

// lateHandler serves with a handler set after it started serving.
type lateHandler struct {
	h atomic.Pointer[http.ServeMux]
}

func (l *lateHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := l.h.Load(); h != nil {
		h.ServeHTTP(w, r)
		return
	}
	http.Error(w, "the node is starting", http.StatusServiceUnavailable)
}
