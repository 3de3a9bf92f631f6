// Package scheduler decides which queued build runs on which node.
//
// It is pure: no raft, no network, no clock. The caller hands it a read-only
// view of the queue and of the nodes (State) and the current time, and gets
// back a Plan of assignments (build id → node name) that it commits through
// consensus. Nothing in the package mutates the caller's data.
//
// The rules, in the order they apply:
//
//   - a build deferred until after now waits; with the derivation-ordered
//     strategy a build also waits until the outputs of all its input
//     derivations are available in the mesh (the basic strategy lets inputs
//     be missing);
//   - builds go out highest effective priority first, where the effective
//     priority is Priority + wait/Config.AgeStep, so a waiting build gains
//     one priority level per AgeStep and nothing starves; ties go to the
//     older build, then to the smaller id;
//   - a node takes a build only if it supports the build's system and every
//     required feature, and never more builds than its free slots;
//   - a build that failed on some nodes goes to another eligible node when
//     one has a free slot;
//   - among the remaining nodes the one already holding the most bytes of the
//     build's input nars wins, then the least loaded, then the smallest name.
//
// Two implementations give the same plan: Schedule, a plain function that
// reads a whole State (the reference, for clarity and tests), and Planner,
// an incremental index that the leader keeps up to date with Upsert, Remove,
// SetNode, RemoveNode and MarkAvailable, whose Plan costs about as much as
// the number of assignments it makes rather than the length of the queue.
// DESIGN.md explains the data structures and lists measured numbers.
//
// Subpackage schedtest generates farm-scale queues and records plans for
// tests.
package scheduler
