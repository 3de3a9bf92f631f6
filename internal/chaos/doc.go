// Package chaos is the mesh's chaos suite: five real drvmesh hosts of
// the network-namespace testbed (internal/testbed), each building with
// Nix in its own chroot store, take batches of a generated graph of
// sleeping derivations while a seeded schedule kills, restarts, pauses,
// partitions and starves them, never more than two of five at once.
// Then the faults stop, the mesh gets a grace period, and the suite
// prints and asserts its invariants: no acknowledged build lost, every
// build final, every output substitutable from every host by a stock Nix
// client requiring the mesh's signature, every nar on min-copies hosts,
// identical replicated state, each build-succeeded hook run exactly
// once, no build processes left behind by a killed host, and every node
// gone within 30 s of SIGTERM, also when cut off.
//
// The suite is a test only (chaos_test.go). It runs under `go test ./...`
// when CI is set and the test runs as root (the short form, about four
// minutes), and from scripts/chaos.sh with a seed and a length:
//
//	scripts/chaos.sh                       # the long form, a fresh seed
//	scripts/chaos.sh --seed 42 --minutes 3 # replay a seed
//	scripts/chaos.sh --short --seed 42     # the form CI runs
package chaos
