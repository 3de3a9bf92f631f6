// Package store implements the Nix and Guix store formats byte-exactly:
// Nix base32, hashes, store paths, derivations (ATerm), NAR, narinfo, and
// narinfo signatures in both the Nix (Ed25519) and Guix (ECDSA on the
// Ed25519 curve, S-expressions) styles.
//
// It imports nothing else of drvmesh; every other package builds on it.
package store
