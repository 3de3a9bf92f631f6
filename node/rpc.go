package node

import (
	"net/http"
)

// rpcHandler serves node-to-node calls on the cluster port. Every caller
// has already proved, by its certificate, that it is an admitted node.
func (n *Node) rpcHandler() http.Handler {
	mux := http.NewServeMux()
	n.fwd.Routes(mux)
	n.keep.Routes(mux)
	return mux
}
