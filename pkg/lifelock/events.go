package lifelock

import (
	"context"
	"fmt"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/reference"
)

// This file reports what the lock does and decides: Events on the lock object and on the candidate's Pod,
// log lines and the metrics of metrics.go. It decides nothing.

// Reasons of the Events a Lock records, on the lock object and on the candidate's own Pod.
const (
	ReasonBecameLeader     = "BecameLeader"     // created a lock nobody held, or re-acquired it after a container restart
	ReasonTookOver         = "TookOver"         // took the lock from a previous holder that is gone or released it (the message names it and why)
	ReasonLostLock         = "LostLock"         // (Warning) lost the lock and stops leading: it fences itself
	ReasonReleased         = "Released"         // released the lock on shutdown, after its controllers stopped
	ReasonHolderLooksStuck = "HolderLooksStuck" // (Warning) waits on a holder whose Node is NotReady or whose Pod is stuck terminating
)

// reportLeadLocked reports that this process leads in written, the object its acquisition wrote (or found)
// after waiting grace: a log line, an Event and the acquisition metrics. Lock.mu must be held.
func (l *Lock) reportLeadLocked(written *coordinationv1.Lease, j *judgement, grace time.Duration) {
	term := l.core.term
	acquisitionsTotal.WithLabelValues(l.name, j.metric).Inc()
	if !l.since.IsZero() {
		acquireWaitSeconds.WithLabelValues(l.name).Observe(time.Since(l.since).Seconds())
	}
	l.clearStuckLocked()
	l.log.Info("Acquired lock", "reason", j.reason, "previousHolder", j.previous, "grace", grace, "term", term.String())
	if j.previous != "" && j.kind != judgedOurs {
		l.eventLocked(written, corev1.EventTypeNormal, ReasonTookOver, "%s took over the lock from %s (%s); term %s", l.own.Name, j.previous, j.reason, term)
		return
	}
	l.eventLocked(written, corev1.EventTypeNormal, ReasonBecameLeader, "%s became leader (%s); term %s", l.own.Name, j.reason, term)
}

// reportLostLocked reports, once, that this process lost the lock it led with and stops leading, and closes
// Lost's channel. Lock.mu must be held; the core's phase has moved to lost, or the watches show the loss.
func (l *Lock) reportLostLocked(reason string) {
	if l.lostReported || l.core.term.IsZero() {
		return // reported already, or this process never led
	}
	l.lostReported, l.lostAt = true, time.Now()
	l.lostOnce.Do(func() { close(l.lostCh) })
	l.log.Info("Lost lock, stopping", "reason", reason, "term", l.core.term.String())
	l.eventLocked(l.core.lock, corev1.EventTypeWarning, ReasonLostLock, "%s lost the lock (%s) and stops leading; term %s", l.own.Name, reason, l.core.term)
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
		// The two writes go out together: a lost leader's Close waits for them only briefly.
		ctx, cancel := context.WithTimeout(context.Background(), eventWriteTimeout)
		defer cancel()
		var both sync.WaitGroup
		for _, obj := range []runtime.Object{own, lockObj} {
			both.Go(func() { l.writeEvent(ctx, obj, eventType, reason, msg, now) })
		}
		both.Wait()
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
			l.log.Error(err, "Cannot record Events; grant create on events (see config/rbac/lifelock_leader_election_role.yaml)", "reason", reason, "message", msg)
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
