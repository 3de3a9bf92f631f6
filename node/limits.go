package node

import (
	"net"
	"net/http"
	"time"

	"github.com/drvmesh/drvmesh/internal/httplimit"
	"github.com/drvmesh/drvmesh/node/httpapi"
)

// What one client may hold of the public HTTP server. A Nix client opens
// up to 25 connections by default, and many users may share one address
// behind a NAT, so the per-address cap is generous; a flood from one
// address still leaves room for everyone else.
const (
	httpMaxConns    = 4096
	httpMaxPerAddr  = 256
	httpMaxInFlight = 1024
	// httpIdleWrite drops a client that reads nothing of its answer for
	// this long (a pause in a request body is bounded per route).
	httpIdleWrite = 60 * time.Second
	// maxUploadBody bounds one nar upload or import stream (admin only).
	maxUploadBody = 64 << 30
)

// publicRule is what a request to the public HTTP server may send: small
// bodies read within a minute everywhere, except the uploads, which may
// be large and slow while bytes keep moving.
func publicRule(r *http.Request) httplimit.Rule {
	switch {
	case r.Method == http.MethodPut && r.URL.Path == "/api/v1/nars",
		r.Method == http.MethodPost && r.URL.Path == "/api/v1/nars/import":
		return httplimit.Rule{MaxBody: maxUploadBody}
	case r.Method == http.MethodPost && r.URL.Path == "/api/v1/builds":
		return httplimit.Rule{MaxBody: 16 << 20, ReadFor: 2 * time.Minute}
	case r.Method == http.MethodPost && r.URL.Path == "/api/v1/paths/missing":
		return httplimit.Rule{MaxBody: httpapi.MaxMissingBody, ReadFor: time.Minute}
	}
	return httplimit.Rule{MaxBody: 1 << 20, ReadFor: time.Minute}
}

// clusterRule is what a member's request to the cluster port may send:
// forwarded commands (a batch of submissions) are the largest.
func clusterRule(*http.Request) httplimit.Rule {
	return httplimit.Rule{MaxBody: 64 << 20, ReadFor: 2 * time.Minute}
}

// publicServer is the public HTTP server of h, with its limits; serve it
// on publicListener.
func publicServer(h http.Handler) *http.Server {
	h = httplimit.InFlight(httplimit.Requests(h, publicRule), httpMaxInFlight)
	return httplimit.Server(h, httplimit.DefaultTimeouts())
}

// publicListener caps the connections of the public HTTP listener.
func publicListener(ln net.Listener) *httplimit.Listener {
	return httplimit.NewListener(ln, httpMaxConns, httpMaxPerAddr, httpIdleWrite)
}

// clusterServer is the cluster port's HTTP server (members only, over
// mutual TLS; its listener is the TLS mux, whose connections the server
// must see as *tls.Conn, so no connection caps wrap it).
func clusterServer(h http.Handler) *http.Server {
	return httplimit.Server(httplimit.Requests(h, clusterRule), httplimit.DefaultTimeouts())
}
