package gossip

import "github.com/hashicorp/memberlist"

// metaDelegate hands memberlist this node's encoded Meta and takes the one
// user message the mesh sends, the leave notice (see leave.go). The mesh
// keeps no user state in gossip (raft and HTTP carry that), so the other
// Delegate methods do nothing.
type metaDelegate struct{ g *Gossip }

var _ memberlist.Delegate = (*metaDelegate)(nil)

// NodeMeta returns the encoded meta; EncodeMeta already kept it within
// MaxMetaSize, which is the limit memberlist passes.
func (d *metaDelegate) NodeMeta(limit int) []byte {
	b := d.g.localMeta()
	if len(b) > limit {
		// Unreachable while limit is MaxMetaSize; never hand memberlist
		// more than it allows (it panics).
		return nil
	}
	return b
}

func (d *metaDelegate) NotifyMsg(buf []byte)                   { d.g.handleMsg(buf) }
func (d *metaDelegate) GetBroadcasts(int, int) [][]byte        { return nil }
func (d *metaDelegate) LocalState(bool) []byte                 { return nil }
func (d *metaDelegate) MergeRemoteState(buf []byte, join bool) {}
