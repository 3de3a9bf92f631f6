package node

import (
	"context"

	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/node/cluster"
	"github.com/drvmesh/drvmesh/store"
)

// The rooms of the node declare what they consume; these adapters fill
// those interfaces from the parts node wires together.

// remoteIndex tells the leader how far another node has applied the log.
type remoteIndex struct{ f *cluster.Forwarder }

func (r remoteIndex) RemoteApplied(ctx context.Context, addr string) (uint64, error) {
	ix, err := r.f.RemoteIndex(ctx, addr)
	return ix.Applied, err
}

// copies restores copy counts for the leader.
type copies struct{ n *Node }

func (c copies) ReplicateAsync(hashParts ...string) { c.n.replicateAsync(hashParts...) }

// submitter reads .drv files and records builds for the leader.
type submitter struct{ n *Node }

func (s submitter) DrvReader(ctx context.Context) func(string) (*consensus.Drv, error) {
	rd := s.n.newDrvReader(ctx)
	hasher := store.NewHasher(rd.load)
	return func(p string) (*consensus.Drv, error) { return s.n.drvRecord(p, rd, hasher) }
}

func (s submitter) Submit(ctx context.Context, drvs []string) (int, error) {
	res, err := s.n.submit(ctx, submitRequest{Derivations: drvs, Retries: -1})
	return len(res), err
}
