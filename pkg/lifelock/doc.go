// Package lifelock is leader-for-life election for Kubernetes operators: a candidate becomes leader by
// atomically creating one lock object (a coordination.k8s.io/v1 Lease, or a ConfigMap in operator-lib's
// format; Options.Kind) owned by its own Pod. It never renews it, and the garbage collector frees the lock
// only when that Pod object is gone.
//
// # Two ways to use it
//
// A controller-runtime manager adopts it through package manageropts (--leader-elect-mode=life). A program
// without a manager calls Become, or runs client-go's LeaderElector itself with Lock.ElectionConfig.
//
// # What is guaranteed
//
// At most one leader per lock, as long as a deleted Pod's containers have stopped before its object
// disappears: the contract the kubelet and the API server keep for every Pod deleted without --force.
// Beyond it, a previous holder that can still reach the API server (its Pod force-deleted, or written
// Failed while a container runs) sees its loss on its watches and stops (Lock.Lost) before its successor
// acts: a successor waits until every earlier holder is proven stopped, or for the holder's stated fence
// bound (350 ms with manageropts or Become), or for the acquisition grace (1.1 s otherwise); TimingsFor
// derives both. Nobody stays stuck once the holder's Pod object is gone, and an idle election makes no API
// requests.
//
// # What is not
//
// Availability: a leader on a dead or partitioned node keeps the lock until its Pod object is removed
// (delete the Node, taint it out-of-service, or force-delete the Pod knowing its containers stopped); a
// follower that waits on such a holder says so (a HolderLooksStuck Event). A force-deleted leader that is
// also cut off from the API server cannot learn that it lost, and acts until its node stops it: fence what
// it writes with its Term (Lock.Fence).
//
// # More
//
// The repository's docs/design.md gives the protocol, the lock format and states, the kubelet facts it
// relies on and how the argument is checked (a pure decision core, core.go, explored by a seeded simulation);
// docs/observability.md the Events, metrics, health checks and the term; docs/stuck-lock.md what to do
// about a stuck holder; docs/migrate-from-lease.md and docs/migrate-from-operator-lib.md how to move an
// operator to it with a rolling update.
package lifelock
