package narcache

import (
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// memberGater admits only connections to and from mesh members. The peer
// ID is known, and checked, right after the security handshake, so a
// non-member is cut off before any stream opens.
type memberGater struct {
	allow func(peer.ID) bool
}

func (g memberGater) InterceptPeerDial(p peer.ID) bool                 { return g.allow(p) }
func (g memberGater) InterceptAddrDial(p peer.ID, _ ma.Multiaddr) bool { return g.allow(p) }
func (g memberGater) InterceptAccept(network.ConnMultiaddrs) bool      { return true }
func (g memberGater) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return g.allow(p)
}
func (g memberGater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) {
	return true, 0
}
