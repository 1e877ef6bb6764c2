package lifelock

import "errors"

// Sentinel errors. Callers branch on them with errors.Is; the errors this package returns wrap them with
// what was being done and what to do about it.
var (
	// ErrNotInCluster means the candidate's own Pod could not be found because the process does not run in
	// a Pod: neither POD_NAMESPACE nor the service-account namespace file is there. In a Pod, set POD_NAME
	// and POD_NAMESPACE (or Options.PodName and Options.PodNamespace); outside a cluster, run one process
	// without leader election.
	ErrNotInCluster = errors.New("not running in a Kubernetes Pod")

	// ErrPodNameUnknown means the namespace is known but the Pod's name is not: POD_NAME is unset and the
	// hostname does not name a Pod in that namespace (the Pod sets spec.hostname or uses the host network).
	ErrPodNameUnknown = errors.New("own Pod name unknown")

	// ErrPodNotFound means the Pod named by POD_NAME (or Options.PodName) does not exist in its namespace,
	// or exists with another UID than POD_UID (or Options.PodUID): this process's Pod is gone.
	ErrPodNotFound = errors.New("own Pod not found")

	// ErrNamespaceMismatch means the lock would live in another namespace than the candidate's Pod. The lock
	// is owned by the holder's Pod, and an ownerReference cannot point across namespaces (the garbage
	// collector deletes such an object at once), so the lock lives in the Pod's namespace: leave its
	// namespace unset.
	ErrNamespaceMismatch = errors.New("lock namespace differs from the Pod's")

	// ErrInvalidLockName means the lock name is not a valid Kubernetes object name.
	ErrInvalidLockName = errors.New("invalid lock name")

	// ErrMissingPermission means the candidate's credentials lack a permission the lock needs. The wrapping
	// error names the verb and the resource.
	ErrMissingPermission = errors.New("missing permission")

	// ErrLockLost means this process held the lock and lost it: the lock was deleted, re-owned or marked
	// for deletion, or this process's Pod reached phase Failed or Succeeded. A lock that was lost never
	// acquires again; the process is expected to exit.
	ErrLockLost = errors.New("leader lock lost")

	// ErrNotLeading means this process has not (yet) acquired the lock: Fence refuses a write.
	ErrNotLeading = errors.New("not leading")

	// ErrReleased means the lock was released by this process (on shutdown) and is no longer usable.
	ErrReleased = errors.New("leader lock released")

	// ErrNotAcquired means an acquisition attempt did not succeed: someone else holds the lock, or it
	// changed between the decision and the write. The elector simply tries again.
	ErrNotAcquired = errors.New("leader lock not acquired")
)
