package cluster

import (
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/drvmesh/drvmesh/consensus"
)

// Raft accepts connections only from voters: only the leader sends
// AppendEntries, InstallSnapshot and TimeoutNow, and candidates send
// (pre-)votes, and both are voters. A nonvoter or a volunteer that opens
// a raft stream could otherwise claim a higher term (deposing the
// leader) or hand replicas entries of its own making.

// RaftGate decides whether a raft connection from the peer whose
// verified certificate is cert may reach raft: nil admits it.
type RaftGate func(cert *x509.Certificate) error

// ErrNotVoter: a raft connection came from a certificate that is not a
// current voter's.
var ErrNotVoter = errors.New("not a raft voter")

// VoterGate admits raft connections from the current voters of r's
// configuration whose certificate their record holds. While this node
// has lost touch with the mesh (no leader known, or none heard from for
// grace) its configuration and records may be stale: a new member has
// none yet, a node back from a long absence lacks the latest voters.
// Then it also admits a trusted member it knows that is not a voter
// here, and a certificate its state has no record of. Raft needs that
// to catch up; a node in touch with its leader refuses both.
func VoterGate(r *consensus.Raft, grace time.Duration) RaftGate {
	return func(cert *x509.Certificate) error {
		name := cert.Subject.CommonName
		st := r.State()
		if st == nil {
			return fmt.Errorf("%w: raft is not running here yet", ErrNotVoter)
		}
		voter := false
		if servers, err := r.Servers(); err == nil {
			for _, s := range servers {
				voter = voter || s.ID == name && s.Voter
			}
		}
		rec, err := st.Node(name)
		known := err == nil && rec != nil
		if known {
			if _, err := memberRecord(st, cert); err != nil {
				return fmt.Errorf("%w: %v", ErrNotVoter, err)
			}
		}
		if voter && known {
			return nil
		}
		if outOfTouch(r, grace) && (!known || rec.Trusted()) {
			return nil
		}
		return fmt.Errorf("%w: node %q", ErrNotVoter, name)
	}
}

// outOfTouch reports whether this node has no current leader to follow.
func outOfTouch(r *consensus.Raft, grace time.Duration) bool {
	if r.IsLeader() {
		return false
	}
	if _, addr := r.Leader(); addr == "" {
		return true
	}
	return time.Since(r.LastContact()) > grace
}
