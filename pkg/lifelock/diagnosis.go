package lifelock

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// This file diagnoses a holder that looks stuck, for a follower waiting on it: a Node that is NotReady, or a
// Pod terminating past its grace period. It reports (a log line, an Event, a gauge) and never frees the lock.

// diagnose looks at the holder a follower waits on and, the first time it looks stuck, says so: a log
// line, a HolderLooksStuck Event and the lifelock_blocked_by_stuck_holder gauge, naming the holder, its
// Node, how long, and the safe remedies. It never frees the lock.
func (l *Lock) diagnose(a answer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.core
	var s *suspicion
	if a.held && c.holder != nil && c.holder.UID != l.own.UID && c.pod.name == c.holder.Name && c.pod.synced {
		var node *corev1.Node
		if c.node.synced {
			node = c.node.obj
		}
		s = suspect(c.pod.obj, c.holder.UID, node, time.Now())
	}
	if s == nil && c.lock != nil && c.holder == nil && holderOf(c.lock) != "" && c.lock.DeletionTimestamp == nil &&
		ptrInt(c.lock.Spec.LeaseDurationSeconds) == MaxLeaseDurationSeconds {
		// Held, but by no Pod that could ever be judged gone (a ConfigMap with no Pod owner, say, left by
		// an older lock implementation): nobody leads until someone removes it.
		l.reportOwnerlessLocked()
		return
	}
	if s == nil {
		if l.stuck != "" {
			l.log.Info("The lock's holder no longer looks stuck", "holder", l.stuck)
			l.clearStuckLocked()
		}
		return
	}
	key := c.holderID + ": " + s.what
	if l.stuck == key {
		return
	}
	l.stuck = key
	stuckHolder.WithLabelValues(l.name).Set(1)
	msg := fmt.Sprintf("waiting for %s, which holds the lock: %s for %s. %s", c.holderID, s.what, s.since.Round(time.Second), remedies(c.holder.Name, s.node))
	l.log.Info("Nobody can lead while the holder looks stuck", "holder", c.holderID, "node", s.node, "for", s.since.Round(time.Second).String(), "detail", msg)
	l.eventLocked(c.lock, corev1.EventTypeWarning, ReasonHolderLooksStuck, "%s is %s", l.own.Name, msg)
}

// graceEnds returns when the holder's Pod, being deleted, would look stuck (terminatingSlack past its
// deletionTimestamp), if that is still ahead; else the zero time.
func (l *Lock) graceEnds() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.core
	if c.holder == nil || c.pod.name != c.holder.Name || c.pod.obj == nil || string(c.pod.obj.UID) != c.holder.UID || c.pod.obj.DeletionTimestamp == nil {
		return time.Time{}
	}
	if t := c.pod.obj.DeletionTimestamp.Add(terminatingSlack); time.Now().Before(t) {
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

// terminatingSlack is how long past its grace period a terminating Pod may take before it looks stuck: a
// kubelet kills what is left at the end of the grace period and removes the Pod a moment later, so every
// graceful stop of a holder that ignores SIGTERM ends a little past it, and without the slack each follower
// would report it (two Events each: a hundred followers sent two hundred Events at each such failover).
const terminatingSlack = 10 * time.Second

// suspect says whether a holder that counts as alive looks stuck: its Pod is terminating past its grace
// period (deletionTimestamp, which the API server sets to the end of the grace period, passed more than
// terminatingSlack ago), or its Node's Ready condition is False or Unknown. pod is the holder's Pod as watched (nil if absent); node its
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
	if dt := pod.DeletionTimestamp; dt != nil && now.After(dt.Add(terminatingSlack)) {
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

// reportOwnerlessLocked says, once, that the lock is held by no Pod: the log line, a HolderLooksStuck
// Event and the gauge, with the remedy. Lock.mu must be held.
func (l *Lock) reportOwnerlessLocked() {
	key := "ownerless: " + l.core.holderID
	if l.stuck == key {
		return
	}
	l.stuck = key
	stuckHolder.WithLabelValues(l.name).Set(1)
	msg := fmt.Sprintf("waiting for the lock %s, which is held by %q but owned by no Pod, so nothing will ever free it "+
		"(a lock left by another implementation, or whose owner was removed). If no process still acts on it, "+
		"delete it (kubectl -n %s delete %s %s); a candidate then takes it after the acquisition grace.",
		l.Describe(), l.core.holderID, l.namespace, l.store.resource().Resource, l.name)
	l.log.Info("Nobody can lead while the lock is owned by no Pod", "holder", l.core.holderID, "detail", msg)
	l.eventLocked(l.core.lock, corev1.EventTypeWarning, ReasonHolderLooksStuck, "%s is %s", l.own.Name, msg)
}
