package node

import (
	"context"

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
