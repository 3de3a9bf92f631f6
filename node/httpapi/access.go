package httpapi

import (
	"context"
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"
)

// PublicRead is what anyone may read without the admin token.
//
// The binary cache (nix-cache-info, narinfo, nar, the signing keys,
// GET /api/v1/key) is public by design: it is what Nix and Guix clients
// substitute from, and a path's bytes are no secret from whoever can name
// its hash. GET /api/v1/status is public too, for readiness checks; it
// names nodes but gives no addresses. Everything else that is read (the
// build list and builds, logs, the node list with addresses, the web
// page and /metrics) shows what the mesh builds and where its machines
// are, so by default it needs the admin token like every write.
type PublicRead string

// The settings of PublicRead.
const (
	// PublicReadCache serves only the binary cache and status anonymously.
	PublicReadCache PublicRead = "cache"
	// PublicReadAll serves every read anonymously (a trusted network).
	PublicReadAll PublicRead = "all"
)

// ParsePublicRead returns the setting named s.
func ParsePublicRead(s string) (PublicRead, error) {
	switch p := PublicRead(s); p {
	case PublicReadCache, PublicReadAll:
		return p, nil
	}
	return "", fmt.Errorf("%w: public read %q: want cache or all", ErrBadRequest, s)
}

// authorize answers whether r carries the admin token, or writes the
// refusal and returns false.
func (api *API) authorize(w http.ResponseWriter, r *http.Request, what string) bool {
	tok := strings.TrimSpace(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
	st, err := api.raft.State().Settings()
	if err != nil || st.AdminTokenHash == "" {
		apiError(w, http.StatusServiceUnavailable, "the mesh is not ready yet; try again")
		return false
	}
	if tok == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="drvmesh"`)
		apiError(w, http.StatusUnauthorized, "%s needs the admin token (Authorization: Bearer TOKEN; drvmesh --token or $DRVMESH_TOKEN)", what)
		return false
	}
	if subtle.ConstantTimeCompare([]byte(api.cfg.TokenHash(tok)), []byte(st.AdminTokenHash)) != 1 {
		apiError(w, http.StatusUnauthorized, "wrong admin token")
		return false
	}
	return true
}

// admin guards a write endpoint with the admin token.
func (api *API) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if api.authorize(w, r, "this request") {
			h(w, r)
		}
	}
}

// reader guards a read the public may see only with --public-read all.
func (api *API) reader(h http.Handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if api.cfg.PublicRead == PublicReadAll ||
			api.authorize(w, r, "reading builds, logs, nodes and metrics (this node runs with --public-read cache)") {
			h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), authKey{}, r.Header.Get("Authorization"))))
		}
	}
}

// authKey keys the Authorization a read was allowed with: a log this node
// fetches from the node that ran the build is asked for with the same.
type authKey struct{}

func authOf(ctx context.Context) string {
	s, _ := ctx.Value(authKey{}).(string)
	return s
}
