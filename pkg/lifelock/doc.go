// Package lifelock is leader-for-life election for Kubernetes operators: a candidate becomes leader by
// atomically creating one lock object (a coordination.k8s.io/v1 Lease, or a ConfigMap; see Lock kinds)
// owned by its own Pod, never renews it, and the Kubernetes garbage collector frees the lock only when that
// Pod object is gone.
//
// # What is guaranteed
//
// At most one leader per lock, as long as a deleted Pod's containers have stopped before its object
// disappears. That is the contract kubelet and the API server keep for every Pod deleted without --force.
// Beyond it, the acquisition grace (Options.AcquisitionGrace, derived from the elector's timings by
// TimingsFor) keeps a previous holder that can still reach the API server (its Pod force-deleted, or its
// phase written Failed while a container runs) from acting alongside its successor: a new leader
// reports success only after every earlier holder has provably stopped or has had time to fence itself. A
// proof about one holder covers the ones before it only on a lock marked SettledAnnotation.
//
// Nobody stays stuck once the holder's Pod object is gone: the garbage collector deletes the lock, or (after
// a delete with propagationPolicy Orphan) strips its owner, and either way a live candidate takes it.
//
// The decision core (core.go) is pure and is explored by a seeded simulation of the API server, watches,
// garbage collector, kubelet and client-go's elector (make test-sim); docs/design.md has the argument.
//
// A lock that vanishes while its holder's Pod lives (someone deleted it, or a foreground cascading delete
// removed it first) is not free: followers that saw the holder wait for its Pod, and the holder stops
// leading as its watch shows the loss (Lock.Lost: manageropts cancels its leader-only runnables, Become calls
// WithOnLost); client-go's elector follows within about RetryPeriod + RenewDeadline.
//
// # What is not
//
// High availability is not a goal; never having two leaders is. A leader on a node that is partitioned or
// dead keeps the lock until its Pod object is removed: the Node is deleted (the pod garbage collector then
// deletes its Pods), the Pod is force-deleted, or the Node is tainted node.kubernetes.io/out-of-service
// while NotReady (the pod garbage collector then force-deletes its terminating Pods). A NotReady node is not
// proof that its Pods stopped, so it never frees a lock by itself. With
// Options.TakeOverFromOutOfServiceNodes (off by default), the taint alone frees it.
//
// A force-deleted leader that is also cut off from the API server cannot learn that it lost the lock, and
// keeps acting until its node stops it. No lock held in the API server can prevent that; fence the
// resources it writes with the leader's Term.
//
// # How it fits client-go
//
// Lock implements resourcelock.Interface, so client-go's LeaderElector (or a controller-runtime manager,
// through manager.Options.LeaderElectionResourceLockInterface; see package manageropts) drives it. Get and
// the leader's Update are answered from watches of the lock and of its holder's Pod, so the elector's timers
// cost no API requests and can be short (DefaultRetryPeriod, DefaultRenewDeadline); steady state writes
// nothing. The elector's clock never frees a lock held by a live Pod: such a lock is reported with a lease
// that never expires, and a Lease lock stores MaxLeaseDurationSeconds so that plain client-go lease
// candidates using the same name never take it either.
//
// A holder is gone when its Pod does not exist, exists with another UID, or is in phase Failed or
// Succeeded; a takeover is then a compare-and-swap write on the version of the lock that was judged. On
// shutdown after its controllers stopped (ReleaseOnCancel, and Options.WorkStopped) the leader releases the
// lock so that the next candidate takes it at once: a Lease lock is marked released (no holder, no owner)
// and kept, a ConfigMap lock is marked released and then deleted. A Lock that has held a term and lost it
// never acquires again: the process is expected to exit, as controller-runtime's manager does. While one of
// its watches is failing, a leader confirms its renewal with live reads, and a follower does not acquire.
//
// The lock lives in the candidate Pod's namespace: an ownerReference cannot point across namespaces, so
// another namespace is refused (ErrNamespaceMismatch). Give the Pod's UID (POD_UID from the downward API,
// or Options.PodUID) where the Pod spec can: a process that starts after its Pod was force-deleted and
// re-created under the same name then refuses to start instead of taking the new Pod's identity.
//
// When a lock becomes free, each follower waits a random time up to Options.AcquireSpread (100 ms by
// default) on its watches before it tries, and does not try if another candidate has taken the lock by
// then. With many candidates the first attempt still comes almost at once, and the followers that draw a
// later turn than the time the winner's write takes to reach them send nothing; with one follower, a
// failover takes AcquireSpread/2 longer on average. A follower that cannot prove the previous holders
// stopped waits one AcquireSpread more, so that one that can takes the lock, and nobody waits the grace.
//
// Two candidate processes in one Pod (same UID) are kept apart by an abstract Unix socket named after the
// Pod and the lock, which the kernel frees when the process holding it dies; a restarted container of the
// holder's Pod takes its lock back at once.
//
// Programs without a manager call Become.
//
// # Lock kinds
//
// Options.Kind picks the object that holds the lock. KindLease (the default) is a Lease. Plain client-go
// Lease candidates with the same name take it only once it is released or gone, and a life candidate takes
// theirs only once it is released or has expired by client-go's judgement, so a rollout between lease mode
// and life mode never has two leaders. KindConfigMap is operator-lib's leader.Become format: an empty
// ConfigMap with one ownerReference, to the holder's Pod. lifelock and operator-lib v0.19.0 candidates
// using the same lock name exclude each other, so an operator moves from one to the other with a rolling
// update. While operator-lib candidates run, their policy applies to a lifelock leader too: on a NotReady
// Node, operator-lib deletes the leader's Pod and the lock, which gives two leaders if that Node is only
// partitioned. Candidates of different kinds never see each other: change the kind only with no replica of
// the old kind running.
//
// # Events and metrics
//
// A Lock records core/v1 Events on the lock object and on its own Pod (it needs create on events; without
// it, it logs once and works on): BecameLeader, TookOver, LostLock (Warning), Released, and
// HolderLooksStuck (Warning, from a follower). On controller-runtime's metrics registry it counts
// acquisitions (lifelock_acquisitions_total{name,reason}), times the wait for the lock
// (lifelock_acquire_wait_seconds), and flags a follower blocked behind a stuck holder
// (lifelock_blocked_by_stuck_holder). client-go's elector sets leader_election_master_status for any lock.
// Check is a health check that fails only for a leader whose lock watch has been broken for longer than
// Options.WatchFailureTolerance; it never fails for a follower. None of these change a decision of the
// lock.
//
// # The term
//
// Term identifies one leader's tenure: the lock's term number (spec.leaseTransitions, or a ConfigMap
// annotation, incremented by every takeover), the lock object's UID, and the resourceVersion its
// acquisition wrote. Revisions of one cluster are ordered, so Term.Before orders terms even across a lock
// deleted and created again; the number alone does not. A process leads in at most one term: Lock.Fence
// returns it before a write, or an error once this process no longer leads (a superseded leader is still
// reconciling until its manager exits, and must write nothing); Lock.Term keeps it readable after a loss;
// Become stores it with WithTerm. A leader stamps Term.String on what it writes and stops when it finds a
// later stamp. Fencing protects only the writes that are checked against a stamp.
//
// # A holder that looks stuck
//
// A follower that waits on a holder whose Node is NotReady or Unknown (seen only with get, list and watch
// on nodes), or whose Pod has been terminating past its grace period, reports it once: a HolderLooksStuck
// Event naming the holder, its Node, how long, and the safe remedies, the lifelock_blocked_by_stuck_holder
// gauge, and a log line. The diagnosis never frees the lock. The remedies all end with the holder's Pod
// object removed: delete a Node that is gone for good, taint a Node that is shut down out-of-service, or
// force-delete the Pod only when its containers are known to have stopped.
package lifelock
