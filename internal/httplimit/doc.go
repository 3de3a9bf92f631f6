// Package httplimit bounds what one client can hold of an HTTP server:
// connections in all and per source address, requests in flight, request
// bodies, and how long a connection may sit without moving a byte. The
// node's HTTP API, binary cache and cluster RPC are served through it.
//
// The limits are chosen so that no timer cuts an honest transfer: a nar of
// many gigabytes to a slow client keeps its connection as long as bytes
// move, while a client that stops reading or writing loses it after
// IdleIO. A client that trickles a byte at a time is bounded by the
// per-address connection cap instead.
package httplimit
