// Package builder builds derivations with the machine's own daemon, which
// gets everything it needs from the node's own HTTP binary cache (the node
// in turn finds the nars in the mesh).
//
// A Builder has four implementations:
//
//   - Nix (NewNix): nix-store --realise, against the system daemon or a
//     chroot store such as "local?root=DIR".
//   - NixDaemon (NewNixDaemon): the daemon's worker protocol over a pool
//     of long-lived connections (DaemonPool): missing inputs copied in
//     from an InputSource, the derivation sent inline (BuildDerivation),
//     outputs dumped with NarFromPath. It needs a daemon that trusts the
//     node (nix-daemon --stdio, see StdioDaemon, or root); Nix stays the
//     fallback. DESIGN.md explains both and the Guix daemon's dialect.
//   - Guix (NewGuix): guix build against the system guix-daemon.
//   - None (NewNone): a node that coordinates and serves but never builds;
//     Build fails with ErrNoBuilder.
//
// # Nix
//
// Build runs, each in a process group of its own, with NIX_CONFIG setting
// the node as the only substituter (its key trusted, signatures required,
// no fallback, no cached "missing" narinfo) and a private HOME and
// XDG_CACHE_HOME under NixConfig.StateDir:
//
//  1. nix copy --derivation --from NODE [--to STORE] DRV: the .drv and its
//     closure (input .drvs, input sources). A path the node lacks is named
//     by Nix ("path '…' is not valid") and returned in
//     Result.MissingInputs with ErrMissingInputs.
//  2. nix-store --realise --keep-going INPUTS: the input sources and the
//     needed outputs of the input derivations, read from the .drv files.
//     Plain paths can only be substituted, never built, so an input the
//     mesh lacks is reported missing rather than rebuilt here; the
//     missing ones are those nix-store --check-validity --print-invalid
//     then lists.
//  3. nix-store --realise DRV[!OUT,…] [--max-silent-time S] [--timeout S]:
//     exit status 100–107 is ErrBuildFailed (the log says why). The paths
//     it prints are checked against the .drv's outputs.
//
// Canceling the context sends SIGTERM to the command's process group —
// Nix then kills its builder, which runs in a session of its own that a
// signal to our group would not reach — and SIGKILL after a grace period.
//
// With the system daemon (NixConfig.Store ""), the node's user must be
// allowed to set these options: list the node's URL in the daemon's
// trusted-substituters and the mesh key (drvmesh key) in its
// trusted-public-keys, or make the user a trusted-user.
//
// OutputNAR serializes an output from its files (for a chroot store, under
// its root) with store.DumpPath; nix-store --dump would ignore --store.
//
// # Guix
//
// Build runs guix build --no-offload --substitute-urls=NODE DRV and reads
// the output paths it prints. Guix checks substitutes against the
// system-wide ACL, not per command, so Request.TrustedKeys is not used: a
// Guix user authorises the mesh once, as root, with
//
//	drvmesh key --guix > mesh-key.pub
//	guix archive --authorize < mesh-key.pub
//
// where drvmesh key --guix prints the mesh's Guix public key (the
// S-expression form). Missing inputs are read from the daemon's messages
// ("path `…' is required, but there is no substituter that can build it",
// "cannot build missing derivation `…'"). The guix backend is tested with a
// stand-in guix script only: its command line and output parsing.
package builder
