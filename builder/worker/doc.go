// Package worker is a client of the Nix daemon's worker protocol, the
// protocol nix-daemon speaks on its Unix socket and, with --stdio, on its
// standard streams. It implements the handshake, the daemon's stream of
// log and error frames, and the operations a build coordinator needs:
// SetOptions, IsValidPath, QueryValidPaths, QueryPathInfo, AddToStoreNar,
// BuildDerivation and NarFromPath (docs/formats.md §6.1–6.2).
//
// A Conn is spoken over any io.ReadWriteCloser and serves one operation at
// a time. Every length the daemon sends is checked against a bound before
// anything is allocated, and the bytes one reply may make the client keep
// are capped, so a malformed or hostile daemon yields ErrProtocol, never a
// panic or an allocation sized by the peer. An operation whose context
// ends, or whose connection stays silent past its idle timeout, closes the
// connection: the daemon then stops what it was doing (a build is
// killed), and the Conn reports itself broken.
//
// An error the daemon reports (STDERR_ERROR) is a *DaemonError and leaves
// the connection usable; every other error breaks it.
package worker
