// Package leader runs what only the mesh's leader does, for as long as
// this node leads: raft membership that follows gossip (nonvoters,
// promotion, removal of the dead, requeueing and re-replicating what a
// lost node held, and copying again the nars short of copies), the
// scheduling round (a scheduler.Planner kept in step
// with the replicated state through its change feed, one raft entry of
// assignments per round), builds for missing inputs, and the hook runner.
//
// It consumes small interfaces that package node fills: Raft (the raft
// view it drives), Applier (writes through the leader), Members (gossip),
// IndexReader (how far a nonvoter has applied), Copies (re-replication)
// and Submitter (reading .drv files and recording builds). It imports no
// other package of the node.
package leader
