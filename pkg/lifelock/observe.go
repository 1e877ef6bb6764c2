package lifelock

import (
	"context"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/reference"
)

// This file reports what the lock does: Events on the lock object and on the candidate's Pod, the metrics
// of metrics.go, and the diagnosis of a holder that looks stuck. None of it changes a decision.

// Reasons of the Events a Lock records, on the lock object and on the candidate's own Pod.
const (
	ReasonBecameLeader     = "BecameLeader"     // created a lock nobody held, or re-acquired it after a container restart
	ReasonTookOver         = "TookOver"         // took the lock from a previous holder that is gone or released it (the message names it and why)
	ReasonLostLock         = "LostLock"         // (Warning) lost the lock and stops leading: it fences itself
	ReasonReleased         = "Released"         // released the lock on shutdown, after its controllers stopped
	ReasonHolderLooksStuck = "HolderLooksStuck" // (Warning) waits on a holder whose Node is NotReady or whose Pod is stuck terminating
)

// leadLocked makes this process the leader of written, the object its acquisition wrote (or found, on a
// container restart), and reports it. Lock.mu must be held.
func (l *Lock) leadLocked(written *coordinationv1.Lease, j *judgement) {
	l.phase, l.termUID = leading, string(written.UID)
	l.term = Term{Number: ptrInt(written.Spec.LeaseTransitions), LockUID: string(written.UID), Revision: written.ResourceVersion}
	acquisitionsTotal.WithLabelValues(l.name, j.metric).Inc()
	if !l.since.IsZero() {
		acquireWaitSeconds.WithLabelValues(l.name).Observe(time.Since(l.since).Seconds())
	}
	l.clearStuckLocked()
	grace := *l.opts.AcquisitionGrace
	if j.proven {
		grace = 0
	}
	l.log.Info("Acquired lock", "reason", j.reason, "previousHolder", j.previous, "grace", grace, "term", l.term.String())
	if j.previous != "" && j.kind != judgedOurs {
		l.eventLocked(written, corev1.EventTypeNormal, ReasonTookOver, "%s took over the lock from %s (%s); term %s", l.own.Name, j.previous, j.reason, l.term)
		return
	}
	l.eventLocked(written, corev1.EventTypeNormal, ReasonBecameLeader, "%s became leader (%s); term %s", l.own.Name, j.reason, l.term)
}

// loseLocked marks the lock lost and reports it, once. Lock.mu must be held.
func (l *Lock) loseLocked(reason string) {
	was := l.phase
	l.phase = lost
	if was != leading {
		return
	}
	l.log.Info("Lost lock, stopping", "reason", reason, "term", l.term.String())
	l.eventLocked(l.lease, corev1.EventTypeWarning, ReasonLostLock, "%s lost the lock (%s) and stops leading; term %s", l.own.Name, reason, l.term)
}

// event records an Event on the lock object (lease; nil names it without a UID) and on this candidate's Pod.
func (l *Lock) event(lease *coordinationv1.Lease, eventType, reason, format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.eventLocked(lease, eventType, reason, format, args...)
}

// eventLocked is event with Lock.mu held. With Options.EventRecorder, the recorder gets the Events; else
// the lock writes them itself, in the background (Close waits for the writes).
func (l *Lock) eventLocked(lease *coordinationv1.Lease, eventType, reason, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	own := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: l.own.Namespace, Name: l.own.Name, UID: types.UID(l.own.UID)}}
	if l.opts.EventRecorder != nil {
		l.opts.EventRecorder.Eventf(l.lockRef(lease), eventType, reason, "%s", msg)
		l.opts.EventRecorder.Eventf(own, eventType, reason, "%s", msg)
		return
	}
	lockObj := l.lockRef(lease)
	now := time.Now()
	write := func() {
		// Bounded, so that Close (and so a manager's exit) waits at most this long on an unreachable API server.
		ctx, cancel := context.WithTimeout(context.Background(), eventWriteTimeout)
		defer cancel()
		for _, obj := range []runtime.Object{lockObj, own} {
			l.writeEvent(ctx, obj, eventType, reason, msg, now)
		}
	}
	if l.ctx != nil && l.ctx.Err() != nil {
		go write() // closed: Close no longer waits
		return
	}
	l.writing.Add(1)
	go func() {
		defer l.writing.Done()
		write()
	}()
}

// writeEvent creates one core/v1 Event on obj, as client-go's recorder would, without its aggregation
// (a lock records a handful of Events in its life).
func (l *Lock) writeEvent(ctx context.Context, obj runtime.Object, eventType, reason, msg string, now time.Time) {
	ref, err := reference.GetReference(scheme.Scheme, obj)
	if err != nil {
		l.log.Error(err, "Cannot refer to the object of an Event", "reason", reason)
		return
	}
	t := metav1.NewTime(now)
	ev := &corev1.Event{
		ObjectMeta:          metav1.ObjectMeta{Namespace: ref.Namespace, Name: fmt.Sprintf("%s.%x", ref.Name, now.UnixNano())},
		InvolvedObject:      *ref,
		Reason:              reason,
		Message:             msg,
		Type:                eventType,
		FirstTimestamp:      t,
		LastTimestamp:       t,
		Count:               1,
		Source:              corev1.EventSource{Component: eventComponent},
		ReportingController: eventComponent,
		ReportingInstance:   l.own.Name,
	}
	if _, err := l.client.CoreV1().Events(ref.Namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		l.eventErrOnce.Do(func() {
			l.log.Error(err, "Cannot record Events; grant create on events (see config/rbac/role.yaml)", "reason", reason, "message", msg)
		})
	}
}

// eventComponent is the source of the Events a lock writes.
const eventComponent = "lifelock"

// eventWriteTimeout bounds the writes of one Event (on the lock and on the Pod).
const eventWriteTimeout = 5 * time.Second

// lockRef is the lock object as an Event's involved object.
func (l *Lock) lockRef(lease *coordinationv1.Lease) runtime.Object {
	if lease == nil {
		lease = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: l.namespace, Name: l.name}}
	}
	return l.store.reference(lease)
}

// diagnose looks at the holder a follower waits on and, the first time it looks stuck, says so: a log
// line, a HolderLooksStuck Event and the lifelock_blocked_by_stuck_holder gauge, naming the holder, its
// Node, how long, and the safe remedies. It never frees the lock.
func (l *Lock) diagnose(a answer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var s *suspicion
	if a.held && l.holder != nil && l.holder.UID != l.own.UID && l.pods != nil && l.pods.synced {
		var node *corev1.Node
		if l.nodes != nil && l.nodes.synced {
			node = l.nodes.obj
		}
		s = suspect(l.pods.obj, l.holder.UID, node, time.Now())
	}
	if s == nil {
		if l.stuck != "" {
			l.log.Info("The lock's holder no longer looks stuck", "holder", l.stuck)
			l.clearStuckLocked()
		}
		return
	}
	key := l.holderID + ": " + s.what
	if l.stuck == key {
		return
	}
	l.stuck = key
	stuckHolder.WithLabelValues(l.name).Set(1)
	msg := fmt.Sprintf("waiting for %s, which holds the lock: %s for %s. %s", l.holderID, s.what, s.since.Round(time.Second), remedies(l.holder.Name, s.node))
	l.log.Info("Nobody can lead while the holder looks stuck", "holder", l.holderID, "node", s.node, "for", s.since.Round(time.Second).String(), "detail", msg)
	l.eventLocked(l.lease, corev1.EventTypeWarning, ReasonHolderLooksStuck, "%s is %s", l.own.Name, msg)
}

// graceEnds returns when the holder's Pod, being deleted, passes its grace period (its deletionTimestamp),
// if that is still ahead; else the zero time.
func (l *Lock) graceEnds() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.holder == nil || l.pods == nil || l.pods.obj == nil || string(l.pods.obj.UID) != l.holder.UID || l.pods.obj.DeletionTimestamp == nil {
		return time.Time{}
	}
	if t := l.pods.obj.DeletionTimestamp.Time; time.Now().Before(t) {
		return t
	}
	return time.Time{}
}

func (l *Lock) clearStuckLocked() {
	l.stuck = ""
	stuckHolder.WithLabelValues(l.name).Set(0)
}

// suspicion is why a live holder looks stuck.
type suspicion struct {
	what  string        // what looks wrong, e.g. "its Node n1 has been NotReady"
	node  string        // the holder's Node ("" if unbound)
	since time.Duration // how long it has looked so
}

// suspect says whether a holder that counts as alive looks stuck: its Pod is terminating past its grace
// period (deletionTimestamp, which the API server sets to the end of the grace period, has passed), or its
// Node's Ready condition is False or Unknown. pod is the holder's Pod as watched (nil if absent); node its
// Node (nil if unknown).
func suspect(pod *corev1.Pod, uid string, node *corev1.Node, now time.Time) *suspicion {
	if pod == nil || string(pod.UID) != uid {
		return nil
	}
	nodeName := pod.Spec.NodeName
	if node != nil && node.Name == nodeName {
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status != corev1.ConditionTrue {
				state := "NotReady"
				if c.Status == corev1.ConditionUnknown {
					state = "Unknown (its kubelet stopped reporting)"
				}
				return &suspicion{what: fmt.Sprintf("its Node %s has been %s", nodeName, state), node: nodeName, since: now.Sub(c.LastTransitionTime.Time)}
			}
		}
	}
	if dt := pod.DeletionTimestamp; dt != nil && now.After(dt.Time) {
		return &suspicion{what: fmt.Sprintf("its Pod has been terminating past its grace period, on Node %s,", nodeName), node: nodeName, since: now.Sub(dt.Time)}
	}
	return nil
}

// remedies is what an operator can safely do about a stuck holder.
func remedies(pod, node string) string {
	if node == "" {
		node = "<node>"
	}
	return fmt.Sprintf("The lock stays held until that Pod object is gone; never having two leaders depends on it. "+
		"If the Node is gone for good, delete it (kubectl delete node %s): the pod garbage collector then deletes its Pods. "+
		"If it is shut down, taint it (kubectl taint nodes %s node.kubernetes.io/out-of-service=nodeshutdown:NoExecute). "+
		"Force-delete the Pod (kubectl delete pod %s --grace-period=0 --force) only if you know its containers have stopped: "+
		"a leader that still runs would act alongside the next one.", node, node, pod)
}
