// Package schedtest helps test code that uses package scheduler: Generate
// builds a distribution-like queue and a farm of nodes at any scale, and
// Harness drives the reference Schedule and an incremental Planner side by
// side, applying and recording every plan.
package schedtest
