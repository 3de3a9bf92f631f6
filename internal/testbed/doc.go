// Package testbed runs real drvmesh hosts on this machine, each in its own
// network namespace, and hits them with faults: partitions, one-way cuts,
// netem, kill -9, SIGSTOP, full disks. It is the Go face of
// scripts/testbed.sh, which docs/testbed.md describes.
//
// The package drives the script instead of redoing its work in Go, so a
// test, a chaos suite and a person at a shell share one implementation of
// every fault and of the cleanup: a failing test logs the script commands
// it ran, and a person replays them by hand against the same topology.
// Go adds what a shell cannot give a test: HTTP clients whose sockets are
// opened inside a namespace (Testbed.HTTP, Testbed.HTTPFrom), and removal
// of everything through t.Cleanup, even when the test fails.
//
// Every packet stays on the machine. The hosts, the client and the
// bridge live in namespaces the script creates, on a private /24 with no
// default route; the test process reaches hosts only through sockets
// opened in the client namespace, never from the root namespace.
//
// Tests that use it need root, ip, tc, nft, curl and jq. Under CI (CI
// set), a missing tool or running without root fails the test instead of
// skipping it; scripts/deps.sh installs the tools.
package testbed
