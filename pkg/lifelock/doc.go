// Package lifelock is leader-for-life election for Kubernetes operators: a candidate becomes leader by
// atomically creating one lock object (a coordination.k8s.io/v1 Lease) owned by its own Pod, never renews
// it, and the Kubernetes garbage collector frees the lock only when that Pod object is gone.
//
// # What is guaranteed
//
// At most one leader per lock, as long as a deleted Pod's containers have stopped before its object
// disappears. That is the contract kubelet and the API server keep for every Pod deleted without --force.
// Beyond it, the acquisition grace (Options.AcquisitionGrace) keeps a previous holder that can still reach
// the API server (its Pod force-deleted, or its phase written Failed before its containers stopped) from
// acting alongside its successor: a new leader reports success only after the old one has provably stopped
// or has had time to fence itself.
//
// A lock that vanishes while its holder's Pod lives (someone deleted it, or a foreground cascading delete
// removed it first) is not free: followers that saw the holder wait for its Pod, and the holder stops
// leading within about RetryPeriod + RenewDeadline (under a second with the defaults).
//
// # What is not
//
// High availability is not a goal; never having two leaders is. A leader on a node that is partitioned or
// dead keeps the lock until its Pod object is removed (the Node is deleted, the Pod is force-deleted, or the
// node is tainted node.kubernetes.io/out-of-service). A NotReady node is not proof that its Pods stopped, so
// it never frees a lock by itself.
//
// A force-deleted leader that is also cut off from the API server cannot learn that it lost the lock, and
// keeps acting until its node stops it. No lock held in the API server can prevent that; fence the
// resources it writes with the lock's term number (spec.leaseTransitions, incremented at every takeover).
//
// # How it fits client-go
//
// Lock implements resourcelock.Interface, so client-go's LeaderElector (or a controller-runtime manager,
// through manager.Options.LeaderElectionResourceLockInterface; see package manageropts) drives it. Get and
// the leader's Update are answered from watches of the lock and of its holder's Pod, so the elector's timers
// cost no API requests and can be short (DefaultRetryPeriod, DefaultRenewDeadline); steady state writes
// nothing. The elector's clock never frees a lock held by a live Pod: such a lock is reported with a lease
// that never expires, and it stores MaxLeaseDurationSeconds so that plain client-go lease candidates using
// the same name never take it either.
//
// A holder is gone when its Pod does not exist, exists with another UID, or is in phase Failed or
// Succeeded; a takeover is then a compare-and-swap Update on the version of the lock that was judged. On
// shutdown after its controllers stopped (ReleaseOnCancel) the leader marks the lock released instead of
// deleting it, so the next candidate takes it at once. A Lock that has held a term and lost it never
// acquires again: the process is expected to exit, as controller-runtime's manager does.
//
// When a lock becomes free, each follower waits a random time up to Options.AcquireSpread (100 ms by
// default) on its watches before it tries, and does not try if another candidate has taken the lock by
// then. With many candidates the first attempt still comes almost at once, and the followers that draw a
// later turn than the time the winner's write takes to reach them send nothing; with one follower, a
// failover takes AcquireSpread/2 longer on average.
//
// Two candidate processes in one Pod (same UID) are kept apart by an abstract Unix socket named after the
// Pod and the lock, which the kernel frees when the process holding it dies; a restarted container of the
// holder's Pod takes its lock back at once.
//
// Programs without a manager call Become.
package lifelock
