//go:build race

package testbed

// raceEnabled builds the hosts' drvmesh with the race detector when the
// test runs with it: the packages are then already compiled that way, and
// a race inside a host fails the test through the host dying.
const raceEnabled = true
