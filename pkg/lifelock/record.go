package lifelock

import (
	"encoding/json"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/utils/ptr"
)

// This file holds the lock format and the pure judgments made on it: no API calls, no state.

// identityFor is the holder identity of a Pod: its name and UID, so that two Pods with the same name (a
// StatefulSet restart) never share one.
func identityFor(p PodRef) string { return p.Name + "_" + p.UID }

// ownerRefFor is the single ownerReference a lock carries: the holder's Pod, so that the garbage collector
// deletes the lock once the Pod object is gone.
func ownerRefFor(p PodRef) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: "v1", Kind: "Pod", Name: p.Name, UID: types.UID(p.UID)}
}

// podOwner returns the Pod that owns a lock, if the lock has the lifelock format.
func podOwner(l *coordinationv1.Lease) (PodRef, bool) {
	for _, r := range l.OwnerReferences {
		if r.APIVersion == "v1" && r.Kind == "Pod" {
			return PodRef{Namespace: l.Namespace, Name: r.Name, UID: string(r.UID)}, true
		}
	}
	return PodRef{}, false
}

// lockHolder returns the Pod that holds a lock: its Pod owner, or, for a lock whose ownerReference is gone
// but whose spec is still lifelock's (a never-expiring lease held by "<pod name>_<pod UID>"), the Pod its
// holder identity names. The garbage collector strips the ownerReference instead of deleting the lock when
// the holder's Pod is deleted with propagationPolicy Orphan; the lock is still that Pod's, and is free once
// that Pod is gone. A plain client-go lease never stores MaxLeaseDurationSeconds, so its holder (often
// "<hostname>_<random UUID>") is never mistaken for a Pod.
func lockHolder(l *coordinationv1.Lease) (PodRef, bool) {
	if owner, ok := podOwner(l); ok {
		return owner, true
	}
	if ptr.Deref(l.Spec.LeaseDurationSeconds, 0) != MaxLeaseDurationSeconds {
		return PodRef{}, false
	}
	return parseIdentity(l.Namespace, holderOf(l))
}

// parseIdentity reads a holder identity written by identityFor: "<pod name>_<pod UID>". Pod names cannot
// contain '_', so the last one separates the two.
func parseIdentity(namespace, id string) (PodRef, bool) {
	i := strings.LastIndexByte(id, '_')
	if i <= 0 || i == len(id)-1 {
		return PodRef{}, false
	}
	name, uid := id[:i], id[i+1:]
	if len(validation.IsDNS1123Subdomain(name)) > 0 || strings.ContainsAny(uid, " ()/") {
		return PodRef{}, false
	}
	return PodRef{Namespace: namespace, Name: name, UID: uid}, true
}

// settledOf reports whether a lock version carries SettledAnnotation: every holder before the one it names
// (or, on a released lock, before the one that released it) is proven stopped.
func settledOf(l *coordinationv1.Lease) bool { return l.Annotations[SettledAnnotation] == "true" }

// withSettled returns annotations with SettledAnnotation set or removed (a copy; nil when empty).
func withSettled(annotations map[string]string, settled bool) map[string]string {
	v := ""
	if settled {
		v = "true"
	}
	return withAnnotation(annotations, SettledAnnotation, v)
}

// withAnnotation returns a copy of annotations with key set to value, or removed when value is empty; nil
// when nothing is left.
func withAnnotation(annotations map[string]string, key, value string) map[string]string {
	out := map[string]string{}
	for k, v := range annotations {
		out[k] = v
	}
	delete(out, key)
	if value != "" {
		out[key] = value
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// stopsWithinOf returns the self-fencing bound a lock version's holder stated (StopsWithinAnnotation), or 0
// when it stated none, or the statement names another holder or is malformed.
func stopsWithinOf(l *coordinationv1.Lease) time.Duration {
	d, id, ok := strings.Cut(l.Annotations[StopsWithinAnnotation], " ")
	if !ok || id == "" || id != holderOf(l) {
		return 0
	}
	v, err := time.ParseDuration(d)
	if err != nil || v <= 0 {
		return 0
	}
	return v
}

// withStopsWithin returns annotations with StopsWithinAnnotation stating that holder stops within d, or
// without it when d is 0 (a copy; nil when empty).
func withStopsWithin(annotations map[string]string, holder string, d time.Duration) map[string]string {
	v := ""
	if d > 0 {
		v = d.String() + " " + holder
	}
	return withAnnotation(annotations, StopsWithinAnnotation, v)
}

// holderOf returns a lease's holder identity ("" when free).
func holderOf(l *coordinationv1.Lease) string { return ptr.Deref(l.Spec.HolderIdentity, "") }

// heldSpec fills in the spec of a lock held by holder from now on, as term number transitions.
func heldSpec(holder PodRef, transitions int32, now time.Time) coordinationv1.LeaseSpec {
	t := metav1.NewMicroTime(now)
	return coordinationv1.LeaseSpec{
		HolderIdentity:       ptr.To(identityFor(holder)),
		LeaseDurationSeconds: ptr.To[int32](MaxLeaseDurationSeconds),
		AcquireTime:          &t,
		RenewTime:            &t,
		LeaseTransitions:     ptr.To(transitions),
	}
}

// newLock is the object a candidate creates to acquire a lock that does not exist. settled says whether
// every earlier holder is proven stopped (SettledAnnotation); stopsWithin is the holder's self-fencing
// bound, stated as StopsWithinAnnotation (0: none).
func newLock(namespace, name string, holder PodRef, now time.Time, settled bool, stopsWithin time.Duration) *coordinationv1.Lease {
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:       namespace,
			Name:            name,
			OwnerReferences: []metav1.OwnerReference{ownerRefFor(holder)},
			Annotations:     withStopsWithin(withSettled(nil, settled), identityFor(holder), stopsWithin),
		},
		Spec: heldSpec(holder, 0, now),
	}
}

// withLabels returns l with labels added (Options.Labels).
func withLabels(l *coordinationv1.Lease, labels map[string]string) *coordinationv1.Lease {
	if len(labels) == 0 {
		return l
	}
	l.Labels = map[string]string{}
	for k, v := range labels {
		l.Labels[k] = v
	}
	return l
}

// takenOver returns old, held by holder from now on as the next term. Labels and other annotations are
// kept; ownerReferences to other Pods are dropped; SettledAnnotation is set as settled says, and
// StopsWithinAnnotation as stopsWithin does.
func takenOver(old *coordinationv1.Lease, holder PodRef, now time.Time, settled bool, stopsWithin time.Duration) *coordinationv1.Lease {
	l := old.DeepCopy()
	l.OwnerReferences = append(withoutPodOwners(l.OwnerReferences), ownerRefFor(holder))
	l.Annotations = withStopsWithin(withSettled(l.Annotations, settled), identityFor(holder), stopsWithin)
	l.Spec = heldSpec(holder, ptr.Deref(old.Spec.LeaseTransitions, 0)+1, now)
	return l
}

// restated returns l, held by the same holder in the same term, stating that it stops within d
// (StopsWithinAnnotation; 0: none): a process that re-acquires its Pod's lock states its own bound.
func restated(l *coordinationv1.Lease, d time.Duration) *coordinationv1.Lease {
	r := l.DeepCopy()
	r.Annotations = withStopsWithin(r.Annotations, holderOf(l), d)
	return r
}

// settledLease returns l with SettledAnnotation set: the write of a holder whose acquisition grace has
// passed.
func settledLease(l *coordinationv1.Lease) *coordinationv1.Lease {
	r := l.DeepCopy()
	r.Annotations = withSettled(r.Annotations, true)
	return r
}

// releasedLease returns l marked free: no holder, no Pod owner, a one-second lease, the term number kept.
// settled says whether every holder up to the releasing one is proven stopped: true for a leader's release
// (its grace has passed and it stopped its work first), the acquisition's own value for a candidate that
// gives up a lock it never led with.
func releasedLease(l *coordinationv1.Lease, now time.Time, settled bool) *coordinationv1.Lease {
	r := l.DeepCopy()
	r.Annotations = withStopsWithin(withSettled(r.Annotations, settled), "", 0)
	r.OwnerReferences = withoutPodOwners(r.OwnerReferences)
	t := metav1.NewMicroTime(now)
	r.Spec.HolderIdentity = ptr.To("")
	r.Spec.LeaseDurationSeconds = ptr.To[int32](1)
	r.Spec.RenewTime = &t
	return r
}

func withoutPodOwners(refs []metav1.OwnerReference) []metav1.OwnerReference {
	var out []metav1.OwnerReference
	for _, r := range refs {
		if r.APIVersion != "v1" || r.Kind != "Pod" {
			out = append(out, r)
		}
	}
	return out
}

// recordOf is the LeaderElectionRecord client-go's elector sees for a lease, as client-go's own LeaseLock
// would report it.
func recordOf(l *coordinationv1.Lease) resourcelock.LeaderElectionRecord {
	r := resourcelock.LeaderElectionRecord{
		HolderIdentity:       holderOf(l),
		LeaseDurationSeconds: int(ptr.Deref(l.Spec.LeaseDurationSeconds, 0)),
		LeaderTransitions:    int(ptr.Deref(l.Spec.LeaseTransitions, 0)),
	}
	if l.Spec.AcquireTime != nil {
		r.AcquireTime = metav1.NewTime(l.Spec.AcquireTime.Time)
	}
	if l.Spec.RenewTime != nil {
		r.RenewTime = metav1.NewTime(l.Spec.RenewTime.Time)
	}
	if l.Spec.Strategy != nil {
		r.Strategy = *l.Spec.Strategy
	}
	if l.Spec.PreferredHolder != nil {
		r.PreferredHolder = *l.Spec.PreferredHolder
	}
	return r
}

// heldRecord is what the elector sees for a lock held by a live holder: that holder, with a lease that
// never expires, whatever the lease says.
func heldRecord(holder string, base resourcelock.LeaderElectionRecord) resourcelock.LeaderElectionRecord {
	base.HolderIdentity = holder
	base.LeaseDurationSeconds = MaxLeaseDurationSeconds
	return base
}

// freeRecord is what the elector sees for a lock it may take over: no holder.
func freeRecord(base resourcelock.LeaderElectionRecord) resourcelock.LeaderElectionRecord {
	base.HolderIdentity = ""
	return base
}

// rawRecord serialises a record the way the elector compares them (it only checks bytes for change).
func rawRecord(r resourcelock.LeaderElectionRecord) []byte {
	b, _ := json.Marshal(r) // a plain struct of strings, ints and times cannot fail to marshal
	return b
}

// podVerdict is what the cache says about a holder's Pod.
type podVerdict int

const (
	podAlive          podVerdict = iota // exists with the holder's UID, not Failed/Succeeded (Terminating counts as alive)
	podMissing                          // no Pod with that name
	podReplaced                         // a Pod with that name but another UID
	podTerminal                         // phase Failed or Succeeded
	podOutOfService                     // alive on paper, on a Node tainted out-of-service (Options.TakeOverFromOutOfServiceNodes)
	podUnknownVerdict                   // not observed yet
)

func (v podVerdict) String() string {
	switch v {
	case podAlive:
		return "alive"
	case podMissing:
		return "holder Pod deleted"
	case podReplaced:
		return "holder Pod UID changed"
	case podTerminal:
		return "holder Pod terminal"
	case podOutOfService:
		return "holder Pod's Node is out of service"
	default:
		return "unknown"
	}
}

// metric is the verdict as a reason label of lifelock_acquisitions_total.
func (v podVerdict) metric() string {
	switch v {
	case podMissing:
		return "holder_pod_gone"
	case podReplaced:
		return "holder_uid_changed"
	case podTerminal:
		return "holder_terminal"
	case podOutOfService:
		return "holder_out_of_service"
	default:
		return "unknown"
	}
}

// OutOfServiceTaint is the taint an administrator puts on a Node that is shut down, to say its Pods no
// longer run (Kubernetes' non-graceful node shutdown). With Options.TakeOverFromOutOfServiceNodes, a holder
// on such a Node counts as gone.
const OutOfServiceTaint = "node.kubernetes.io/out-of-service"

// outOfService reports whether node carries OutOfServiceTaint (any value or effect).
func outOfService(node *corev1.Node) bool {
	for _, t := range node.Spec.Taints {
		if t.Key == OutOfServiceTaint {
			return true
		}
	}
	return false
}

// judgePod says whether pod (nil when absent) is the live holder uid.
func judgePod(pod *corev1.Pod, uid string) podVerdict {
	switch {
	case pod == nil:
		return podMissing
	case string(pod.UID) != uid:
		return podReplaced
	case pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded:
		return podTerminal
	default:
		return podAlive
	}
}

// provenStopped reports whether pod is in a state only a kubelet whose containers have stopped writes, with
// every container (init containers too) terminated and:
//   - deletionTimestamp set: what the kubelet writes before it removes a gracefully deleted Pod; or
//   - a terminal phase (Failed, Succeeded): the kubelet's status manager holds a terminal phase back while a
//     container could still run (node-pressure eviction, preemption, graceful node shutdown, a finished
//     Pod). Pod GC and third parties that write a terminal phase leave the container states as they were.
//
// Container states alone are no proof: after a container restart the API can briefly show the old instance
// terminated while the new one runs (the phase stays Running then).
func provenStopped(pod *corev1.Pod) bool {
	if pod == nil {
		return false
	}
	terminal := pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded
	if pod.DeletionTimestamp == nil && !terminal {
		return false
	}
	statuses := append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
	if len(pod.Status.ContainerStatuses) == 0 {
		return false
	}
	for _, s := range statuses {
		if s.State.Terminated == nil {
			return false
		}
	}
	return true
}
