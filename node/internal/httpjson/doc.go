// Package httpjson writes and reads the JSON bodies the node's HTTP API
// and its cluster RPC share: a value, and errors as {"error": "..."}. It
// owns nothing else and imports nothing of drvmesh.
package httpjson
