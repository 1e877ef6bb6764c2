// Package fencing makes the API server refuse the writes of a leader that has been superseded: fencing
// that no longer depends on the operator's own code checking stamps.
//
// A lifelock leader that is force-deleted while cut off from its watches cannot learn that it lost, and
// acts until its node stops it. Its writes still reach the API server. Two parts stop them there:
//
//   - A client that stamps every write with the term this process leads in (the Annotation, the value
//     lifelock.Term.String), and refuses locally, sending nothing, when the process does not lead or has
//     seen its loss (lifelock.Lock.Fence errors): NewClient wraps a controller-runtime client.Client, and
//     Stamp, StampPatch and StampedDelete do the same for a plain client-go program.
//   - A ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1, Kubernetes 1.30 or later) that takes
//     the lock object itself as its parameter and refuses, before it is stored, every write by the
//     operator's identity to the bound resources whose stamp is not the lock's current term, and every such
//     write with no stamp: Policy generates it and its binding for one lock; config/fencing ships them as a
//     kustomize component.
//
// The stamp is an annotation, not an HTTP header: the policy's CEL expressions see the object written (and,
// for a delete, the object as stored), the request's user and its kind, but no header. An annotation also
// stays on the object, so that anyone can read which term wrote it last.
//
// A delete carries no object. StampedDelete (and the client's Delete) first stamps the object with a patch,
// then deletes it with that patch's resourceVersion and UID as preconditions; the policy checks the stamp of
// the object being deleted (oldObject). A delete is therefore two requests, and fails with a conflict if
// anyone wrote the object in between. DeleteAllOf is refused locally: a collection delete has no single
// object to stamp first.
//
// Writes to subresources (status, scale) are not fenced by the policy: the API server keeps the stored
// metadata on a status write, so a stamp sent with it is not what the policy would see. The client still
// refuses them locally once the process has lost its lock.
//
// Supported reports whether the cluster serves ValidatingAdmissionPolicy at all: call it once at start-up
// and log what it says. On an older cluster lifelock works as before, without this protection.
//
// docs/fencing.md in the repository says what the policy protects, what it does not (writes outside
// Kubernetes, and the few milliseconds while the API server's view of the lock lags a takeover), and what
// it costs.
package fencing
