package node

import (
	"context"

	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/narcache"
	"github.com/drvmesh/drvmesh/node/cluster"
)

// The rooms of the node declare what they consume; these adapters fill
// those interfaces from the parts node wires together.

// remoteIndex tells the leader how far another node has applied the log.
type remoteIndex struct{ f *cluster.Forwarder }

func (r remoteIndex) RemoteApplied(ctx context.Context, addr string) (uint64, error) {
	ix, err := r.f.RemoteIndex(ctx, addr)
	return ix.Applied, err
}

// files is the agent's view of the file-key map and the holders.
type files struct{ n *Node }

func (f files) Note(ni *consensus.NarInfo)           { f.n.noteFiles(ni) }
func (f files) HashPart(key string) (string, bool)   { return f.n.fileIndex(key) }
func (f files) Holders(key string) []narcache.Holder { return f.n.holdersOf(key) }
