package lifelock

import (
	"errors"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

var (
	podA   = PodRef{Namespace: "ns", Name: "a", UID: "uid-a"}
	podB   = PodRef{Namespace: "ns", Name: "b", UID: "uid-b"}
	t0     = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	second = time.Second
)

// lockHeldBy is a lock version held by p, with resourceVersion rv, settled or not.
func lockHeldBy(p PodRef, rv string, settled bool) *coordinationv1.Lease {
	l := newLock("ns", "lock", p, t0, settled, 0)
	l.UID, l.ResourceVersion = "uid-lock", rv
	return l
}

// podState is a Pod object for p: phase, being deleted, containers terminated.
func podState(p PodRef, phase corev1.PodPhase, deleting, terminated bool) *corev1.Pod {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, UID: types.UID(p.UID)}, Status: corev1.PodStatus{Phase: phase}}
	if deleting {
		pod.DeletionTimestamp = &metav1.Time{Time: t0}
	}
	st := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	if terminated {
		st = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{}}
	}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "manager", State: st}}
	return pod
}

// follower is a synced candidate on Pod b that holds its socket.
func follower() *core {
	c := newCore(podB, coreConfig{desc: "ns/lock", grace: 1100 * time.Millisecond, graceDerived: true, leaseDuration: second})
	c.socketHeld, c.lockSynced = true, true
	return c
}

// step is one thing a candidate observes.
type step func(c *core)

func sawLock(l *coordinationv1.Lease) step       { return func(c *core) { c.observeLock(l, false) } }
func sawLockGone(l *coordinationv1.Lease) step   { return func(c *core) { c.observeLock(l, true) } }
func sawPod(p PodRef, pod *corev1.Pod) step      { return sawPodEvent(p, pod, false) }
func sawPodGone(p PodRef, last *corev1.Pod) step { return sawPodEvent(p, last, true) }

// sawPodEvent is one event of a synced watch of p's Pod (its last state when deleted).
func sawPodEvent(p PodRef, pod *corev1.Pod, deleted bool) step {
	return func(c *core) {
		if c.pod.name != p.Name {
			c.watchPod(p.Name)
		}
		c.pod.synced = true
		c.observePod(p.Name, pod, deleted)
	}
}

func TestJudge(t *testing.T) {
	running := podState(podA, corev1.PodRunning, false, false)
	stopping := podState(podA, corev1.PodRunning, true, true) // what kubelet writes before it removes the Pod
	released := func(settled bool) *coordinationv1.Lease {
		l := releasedLease(lockHeldBy(podA, "2", true), t0, settled)
		l.ResourceVersion = "3"
		return l
	}
	orphaned := func() *coordinationv1.Lease { // the garbage collector stripped the owner (propagationPolicy Orphan)
		l := lockHeldBy(podA, "4", true)
		l.OwnerReferences = nil
		return l
	}
	plain := &coordinationv1.Lease{ // a controller-runtime lease-mode holder: "<hostname>_<random UUID>"
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "lock", UID: "uid-lock", ResourceVersion: "5"},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To("a_0b7c1f9e-8d1e-4a5b-9f00-3c2d1e0f9a8b"), LeaseDurationSeconds: ptr.To[int32](15)},
	}
	for _, tc := range []struct {
		name   string
		steps  []step
		held   bool       // held by someone else
		kind   judgedKind // else the judgement
		proven bool
		absent bool // answered NotFound
	}{
		{name: "never seen: create, unproven", kind: judgedAbsent, absent: true},
		{name: "held by a live holder", steps: []step{sawLock(lockHeldBy(podA, "1", true)), sawPod(podA, running)}, held: true},
		{name: "holder's Pod not yet observed", steps: []step{sawLock(lockHeldBy(podA, "1", true))}, held: true},
		{name: "holder stopped gracefully on a settled lock: proven", steps: []step{
			sawLock(lockHeldBy(podA, "1", true)), sawPod(podA, stopping), sawPodGone(podA, stopping),
		}, kind: judgedTakeover, proven: true},
		{name: "holder stopped gracefully on an unsettled lock: its predecessor may run", steps: []step{
			sawLock(lockHeldBy(podA, "1", false)), sawPod(podA, stopping), sawPodGone(podA, stopping),
		}, kind: judgedTakeover},
		{name: "holder force-deleted: unproven", steps: []step{
			sawLock(lockHeldBy(podA, "1", true)), sawPod(podA, running), sawPodGone(podA, running),
		}, kind: judgedTakeover},
		{name: "holder Failed with containers running: unproven", steps: []step{
			sawLock(lockHeldBy(podA, "1", true)), sawPod(podA, podState(podA, corev1.PodFailed, false, false)),
		}, kind: judgedTakeover},
		{name: "lock collected after a graceful stop, settled: create, proven", steps: []step{
			sawLock(lockHeldBy(podA, "1", true)), sawPod(podA, stopping), sawPodGone(podA, stopping), sawLockGone(lockHeldBy(podA, "1", true)),
		}, kind: judgedAbsent, proven: true, absent: true},
		{name: "lock collected after a graceful stop, unsettled: create, unproven", steps: []step{
			sawLock(lockHeldBy(podA, "1", false)), sawPod(podA, stopping), sawPodGone(podA, stopping), sawLockGone(lockHeldBy(podA, "1", false)),
		}, kind: judgedAbsent, absent: true},
		{name: "lock vanished under a live holder", steps: []step{
			sawLock(lockHeldBy(podA, "1", true)), sawPod(podA, running), sawLockGone(lockHeldBy(podA, "1", true)),
		}, held: true},
		{name: "released by a leader: proven", steps: []step{sawLock(released(true))}, kind: judgedTakeover, proven: true},
		{name: "released by a candidate that never led: unproven", steps: []step{sawLock(released(false))}, kind: judgedTakeover},
		{name: "a deleted lock's last state decides, not an earlier release", steps: []step{
			sawLock(released(true)), sawLockGone(lockHeldBy(podA, "6", false)), sawPod(podA, running),
		}, held: true},
		{name: "held by this Pod, settled: re-acquire, proven", steps: []step{sawLock(lockHeldBy(podB, "1", true))}, kind: judgedOurs, proven: true},
		{name: "held by this Pod, unsettled (a lost reply, or a restart inside the grace): re-acquire, unproven", steps: []step{sawLock(lockHeldBy(podB, "1", false))}, kind: judgedOurs},
		{name: "orphaned lock whose holder's Pod is gone: take over", steps: []step{
			sawLock(orphaned()), sawPod(podA, stopping), sawPodGone(podA, stopping),
		}, kind: judgedTakeover, proven: true},
		{name: "orphaned lock whose holder's Pod lives", steps: []step{sawLock(orphaned()), sawPod(podA, running)}, held: true},
		{name: "a plain client-go lease is judged by the elector's clock, not by a Pod", steps: []step{sawLock(plain)}, kind: judgedTakeover},
		{name: "lock being deleted", steps: []step{func(c *core) {
			l := lockHeldBy(podA, "1", true)
			l.DeletionTimestamp = &metav1.Time{Time: t0}
			c.observeLock(l, false)
		}}, held: true},
		{name: "another process of this Pod holds the socket", steps: []step{func(c *core) { c.socketHeld = false }}, held: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := follower()
			for _, s := range tc.steps {
				s(c)
			}
			a := c.judge()
			if a.held != tc.held {
				t.Fatalf("held = %v, want %v (answer %+v)", a.held, tc.held, a)
			}
			if tc.held {
				if a.judged != nil {
					t.Fatalf("a held lock was judged actionable: %+v", a.judged)
				}
				return
			}
			if a.judged == nil || a.judged.kind != tc.kind || a.judged.proven != tc.proven {
				t.Fatalf("judged %+v, want kind %v proven %v", a.judged, tc.kind, tc.proven)
			}
			if (a.record == nil) != tc.absent {
				t.Fatalf("record = %+v, want absent %v", a.record, tc.absent)
			}
		})
	}
}

// TestLiveConfirmation: a takeover confirms the holder's end by a live GET unless the Pod watch showed an
// end nothing undoes: the holder's own UID deleted, or its containers stopped by the kubelet for good. A Pod
// merely absent from the watch's list, or another Pod of the same name, may be the watch lagging, and a
// terminal phase with containers running can be written back to Running (the API server allows it): those
// are confirmed.
func TestLiveConfirmation(t *testing.T) {
	held := lockHeldBy(podA, "1", true)
	running := podState(podA, corev1.PodRunning, false, false)
	stopping := podState(podA, corev1.PodRunning, true, true)
	successor := PodRef{Namespace: podA.Namespace, Name: podA.Name, UID: "uid-a2"} // a StatefulSet's next Pod of the name
	for _, tc := range []struct {
		name    string
		steps   []step
		confirm bool
	}{
		{name: "deleted gracefully", steps: []step{sawPod(podA, stopping), sawPodGone(podA, stopping)}},
		{name: "force-deleted", steps: []step{sawPod(podA, running), sawPodGone(podA, running)}},
		{name: "Failed while its containers run", steps: []step{sawPod(podA, podState(podA, corev1.PodFailed, false, false))}, confirm: true},
		{name: "Succeeded, its containers terminated", steps: []step{sawPod(podA, podState(podA, corev1.PodSucceeded, false, true))}},
		{name: "Failed, being deleted, its containers terminated", steps: []step{sawPod(podA, podState(podA, corev1.PodFailed, true, true))}},
		{name: "Failed, then deleted", steps: []step{sawPod(podA, podState(podA, corev1.PodFailed, false, true)), sawPodGone(podA, podState(podA, corev1.PodFailed, false, true))}},
		{name: "deleted, then the lock collected", steps: []step{sawPod(podA, running), sawPodGone(podA, running), sawLockGone(held)}},
		{name: "absent from the watch's list", steps: []step{func(c *core) { c.watchPod(podA.Name); c.pod.synced = true }}, confirm: true},
		{name: "another Pod of the name shown", steps: []step{sawPod(podA, podState(successor, corev1.PodRunning, false, false))}, confirm: true},
		{name: "another Pod of the name deleted", steps: []step{sawPodGone(podA, podState(successor, corev1.PodRunning, false, false))}, confirm: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := follower()
			sawLock(held)(c)
			for _, s := range tc.steps {
				s(c)
			}
			a := c.judge()
			if a.held || a.judged == nil {
				t.Fatalf("the holder's end was not seen: %+v", a)
			}
			if got := a.confirm != nil; got != tc.confirm {
				t.Fatalf("confirmed live: %v, want %v", got, tc.confirm)
			}
		})
	}
}

func TestLockHolder(t *testing.T) {
	for _, tc := range []struct {
		name string
		id   string
		dur  int32
		ok   bool
		want PodRef
	}{
		{"lifelock format", "my-op-7d9f-x2_0b7c1f9e-8d1e", MaxLeaseDurationSeconds, true, PodRef{Namespace: "ns", Name: "my-op-7d9f-x2", UID: "0b7c1f9e-8d1e"}},
		{"a client-go lease with a Pod-like holder", "my-op-7d9f-x2_0b7c1f9e-8d1e", 15, false, PodRef{}},
		{"released", "", MaxLeaseDurationSeconds, false, PodRef{}},
		{"not a Pod name", "My_Op_uid", MaxLeaseDurationSeconds, false, PodRef{}},
		{"ConfigMap without an owner", "(ConfigMap lock has no Pod owner)", MaxLeaseDurationSeconds, false, PodRef{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "ns"}, Spec: coordinationv1.LeaseSpec{HolderIdentity: &tc.id, LeaseDurationSeconds: &tc.dur}}
			got, ok := lockHolder(l)
			if ok != tc.ok || got != tc.want {
				t.Fatalf("lockHolder = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestGraceFor(t *testing.T) {
	c := follower()
	unproven, proven := &judgement{}, &judgement{proven: true}
	for _, tc := range []struct {
		name        string
		j           *judgement
		recordLease int
		derived     bool
		want        time.Duration
		raised      bool
	}{
		{"proven: no grace", proven, 15, true, 0, false},
		{"the timings the lock was made for", unproven, 1, true, 1100 * time.Millisecond, false},
		// client-go's usual 15 s / 10 s / 2 s: self-fencing takes up to about 14.4 s.
		{"an elector with a longer lease: raised to cover it", unproven, 15, true, 16*second + 2*16*second*5/6 + DefaultExitMargin, true},
		{"an explicit grace is kept", unproven, 15, false, 1100 * time.Millisecond, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.cfg.graceDerived = tc.derived
			got, raised := c.graceFor(tc.j, tc.recordLease)
			if got != tc.want || raised != tc.raised {
				t.Fatalf("graceFor = %s, %v; want %s, %v", got, raised, tc.want, tc.raised)
			}
			if tc.raised && got < 10*second+2*2*second+DefaultExitMargin {
				t.Fatalf("grace %s does not cover client-go's usual timings", got)
			}
		})
	}
}

// leaderOn is a candidate on Pod b that leads in a lock version it wrote.
func leaderOn(settled bool) (*core, *coordinationv1.Lease) {
	c := follower()
	l := lockHeldBy(podB, "7", settled)
	c.observeLock(l, false)
	c.watchPod(podB.Name)
	c.pod.synced = true
	c.observePod(podB.Name, podState(podB, corev1.PodRunning, false, false), false)
	c.startAcquisition(l, "", &judgement{kind: judgedOurs, proven: true, events: c.lockEvents}, 0, t0)
	c.lead(l)
	return c, l
}

func TestLoss(t *testing.T) {
	for _, tc := range []struct {
		name string
		step step
		want string
	}{
		{"nothing happened", func(*core) {}, ""},
		{"lock deleted", sawLockGone(lockHeldBy(podB, "7", true)), "lock deleted"},
		{"taken over", sawLock(lockHeldBy(podA, "8", false)), "lock held by a_uid-a"},
		{"own Pod Failed", sawPod(podB, podState(podB, corev1.PodFailed, false, false)), "this Pod is Failed"},
		{"own Pod deleted", sawPodGone(podB, podState(podB, corev1.PodRunning, false, false)), "this Pod was deleted"},
		{"owner stripped", func(c *core) {
			l := lockHeldBy(podB, "8", true)
			l.OwnerReferences = nil
			c.observeLock(l, false)
		}, "lock no longer owned by this Pod"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := leaderOn(true)
			tc.step(c)
			if got := c.renew(); got != tc.want {
				t.Fatalf("renew = %q, want %q", got, tc.want)
			}
			if (c.phase == lost) != (tc.want != "") {
				t.Fatalf("phase = %v after renew %q", c.phase, tc.want)
			}
		})
	}
}

// A leader whose watches are failing judges its renewal from a live read, and only then.
func TestRenewWhileAWatchIsBroken(t *testing.T) {
	c, l := leaderOn(true)
	if c.watchBroken() {
		t.Fatal("broken with working watches")
	}
	c.pod.err = errTest
	if !c.watchBroken() {
		t.Fatal("the own Pod's watch fails, but the renewal trusts it")
	}
	// The watch still shows the Pod running; the live read shows it Failed.
	if got := c.withLive(l, podState(podB, corev1.PodFailed, false, false)).lossOf(c.termUID); got != "this Pod is Failed" {
		t.Fatalf("live loss = %q", got)
	}
	if got := c.withLive(nil, podState(podB, corev1.PodRunning, false, false)).lossOf(c.termUID); got != "lock deleted" {
		t.Fatalf("live loss = %q", got)
	}
	if got := c.lossOf(c.termUID); got != "" {
		t.Fatalf("withLive changed the watched view: %q", got)
	}
}

func TestAcquisition(t *testing.T) {
	c := follower()
	judged := lockHeldBy(podA, "1", true)
	c.observeLock(judged, false)
	c.watchPod(podB.Name)
	c.pod.synced = true
	c.observePod(podB.Name, podState(podB, corev1.PodRunning, false, false), false)
	written := takenOver(judged, podB, t0, false, 0)
	written.ResourceVersion = "2"
	c.startAcquisition(written, "1", &judgement{kind: judgedTakeover, events: c.lockEvents}, time.Second, t0)
	end := t0.Add(time.Second)
	if got := c.acquisition(t0); got != acquisitionWaiting {
		t.Fatalf("before the watch shows the write: %v", got)
	}
	if got := c.acquisition(t0.Add(confirmUnseenAfter)); got != acquisitionConfirm {
		t.Fatalf("a write the watch does not show is confirmed live: %v", got)
	}
	c.observeLock(written, false)
	if got := c.acquisition(t0); got != acquisitionWaiting {
		t.Fatalf("inside the grace: %v", got)
	}
	if got := c.acquisition(end); got != acquisitionLead {
		t.Fatalf("after the grace: %v", got)
	}
	c.observeLock(lockHeldBy(podA, "3", false), false)
	if got := c.acquisition(end); got != acquisitionLost {
		t.Fatalf("taken from it during the grace: %v", got)
	}
	cur, settled := c.abandon(written)
	if settled || cur.ResourceVersion != "3" {
		t.Fatalf("abandon = %s, %v: an unproven acquisition must not release settled", cur.ResourceVersion, settled)
	}
}

// A creation that another lock version came before (created and deleted between the judgement and the
// write) pays the full grace, whether it was proven or was to wait the bound its holder stated: that
// version's holder may still run, and neither the proof nor the bound was about it. (Simulation seeds
// 93,592 and 173,264 found each.)
func TestCreationAfterAnotherVersionPaysTheGrace(t *testing.T) {
	const stated = 350 * time.Millisecond
	stating := func(l *coordinationv1.Lease) *coordinationv1.Lease {
		l.Annotations = withStopsWithin(l.Annotations, identityFor(podA), stated)
		return l
	}
	stopping := podState(podA, corev1.PodRunning, true, true)
	running := podState(podA, corev1.PodRunning, false, false)
	for _, tc := range []struct {
		name   string
		steps  []step
		proven bool
		grace  time.Duration // what the judgement alone allowed
	}{
		{"proven: the holder was seen stopped", []step{sawLock(lockHeldBy(podA, "1", true)), sawPod(podA, stopping), sawPodGone(podA, stopping),
			sawLockGone(lockHeldBy(podA, "1", true))}, true, 0},
		{"the holder was force-deleted and stated its bound", []step{sawLock(stating(lockHeldBy(podA, "1", true))), sawPod(podA, running),
			sawPodGone(podA, running), sawLockGone(stating(lockHeldBy(podA, "1", true)))}, false, stated},
	} {
		for _, when := range []string{"before the write", "after the write"} {
			t.Run(tc.name+", the other version seen "+when, func(t *testing.T) {
				c := follower()
				for _, s := range tc.steps {
					s(c)
				}
				a := c.judge()
				if a.judged == nil || a.judged.kind != judgedAbsent || a.judged.proven != tc.proven {
					t.Fatalf("judged %+v, want a creation, proven %v", a.judged, tc.proven)
				}
				grace, _ := c.graceFor(a.judged, 1)
				if grace != tc.grace {
					t.Fatalf("graceFor = %s, want %s", grace, tc.grace)
				}
				// Meanwhile another candidate (its Pod force-deleted) created the lock, and the garbage
				// collector deleted it.
				other := lockHeldBy(PodRef{Namespace: "ns", Name: "c", UID: "uid-c"}, "2", false)
				other.UID = "uid-other"
				intervene := func() { c.observeLock(other, false); c.observeLock(other, true) }
				if when == "before the write" {
					intervene()
				}
				ours := newLock("ns", "lock", podB, t0, false, 0)
				ours.UID, ours.ResourceVersion = "uid-ours", "4"
				c.startAcquisition(ours, "", a.judged, grace, t0)
				if when == "after the write" {
					intervene()
				}
				seen := t0.Add(10 * time.Millisecond)
				c.observeLock(ours, false)
				if got := c.acquisition(seen); got != acquisitionWaiting {
					t.Fatalf("when the write is seen: %v", got)
				}
				if got := c.acquisition(seen.Add(grace)); got != acquisitionWaiting {
					t.Fatalf("a creation whose judgement went stale leads after %s: %v", grace, got)
				}
				if got := c.acquisition(seen.Add(c.cfg.grace)); got != acquisitionLead {
					t.Fatalf("after the full grace: %v", got)
				}
			})
		}
	}
}

// A write deleted while the watch was failing is never shown: the live read decides instead of a wait
// forever, and a proven acquisition confirmed that way pays the grace (what came between is unknown).
func TestConfirmUnseenAcquisition(t *testing.T) {
	c := follower()
	c.watchPod(podB.Name)
	c.pod.synced = true
	running := podState(podB, corev1.PodRunning, false, false)
	c.observePod(podB.Name, running, false)
	ours := newLock("ns", "lock", podB, t0, false, 0)
	ours.UID, ours.ResourceVersion = "uid-ours", "4"
	c.startAcquisition(ours, "", &judgement{kind: judgedAbsent, proven: true, events: c.lockEvents}, 0, t0)
	later := t0.Add(confirmUnseenAfter)
	if got := c.confirmAcquisition(ours, running, later); got != acquisitionWaiting {
		t.Fatalf("a proven acquisition confirmed live leads at once: %v", got)
	}
	if got := c.confirmAcquisition(ours, running, later.Add(c.cfg.grace)); got != acquisitionLead {
		t.Fatalf("after the grace: %v", got)
	}
	c.startAcquisition(ours, "", &judgement{kind: judgedAbsent, events: c.lockEvents}, 0, t0)
	if got := c.confirmAcquisition(nil, running, later); got != acquisitionLost || c.pending != nil {
		t.Fatalf("a write that is gone: %v", got)
	}
}

func TestTakeAfterLoss(t *testing.T) {
	c, _ := leaderOn(true)
	c.observeLock(lockHeldBy(podA, "8", false), false)
	c.judged = &judgement{kind: judgedTakeover}
	if _, err := c.take(judgedTakeover); err == nil || c.phase != lost {
		t.Fatalf("a leader that lost its lock acquired again: %v, phase %v", err, c.phase)
	}
	if _, err := c.take(judgedAbsent); err == nil {
		t.Fatal("a lost lock acquired again")
	}
}

var errTest = errTestType("watch failed")

type errTestType string

func (e errTestType) Error() string { return string(e) }

// TestStatedFenceBound: a successor that cannot prove the holder stopped waits the bound the holder stated
// (StopsWithinAnnotation) only when no earlier holder may still run (a settled version) and the statement
// is the holder's own; anything else pays the configured grace.
func TestStatedFenceBound(t *testing.T) {
	const stated = 350 * time.Millisecond
	full := 1100 * time.Millisecond
	running := podState(podA, corev1.PodRunning, false, false)
	stating := func(rv string, settled bool) *coordinationv1.Lease {
		l := lockHeldBy(podA, rv, settled)
		l.Annotations = withStopsWithin(l.Annotations, identityFor(podA), stated)
		return l
	}
	// carried is a version held by a whose statement names the holder before it: written by a writer
	// that keeps annotations it does not know (an older lifelock's takeover, client-go's Lease lock).
	carried := func() *coordinationv1.Lease {
		l := lockHeldBy(podA, "1", true)
		l.Annotations = withStopsWithin(l.Annotations, "old_uid-old", stated)
		return l
	}
	forceDeleted := func(l *coordinationv1.Lease) []step {
		return []step{sawLock(l), sawPod(podA, running), sawPodGone(podA, running)}
	}
	for _, tc := range []struct {
		name     string
		steps    []step
		explicit bool
		want     time.Duration
	}{
		{"holder force-deleted, settled, stated: its bound", forceDeleted(stating("1", true)), false, stated},
		{"holder force-deleted, unsettled: an earlier holder may run", forceDeleted(stating("1", false)), false, full},
		{"holder force-deleted, nothing stated", forceDeleted(lockHeldBy(podA, "1", true)), false, full},
		{"a statement naming another holder counts as none", forceDeleted(carried()), false, full},
		{"lock collected after a force delete, settled, stated: its bound", append(forceDeleted(stating("1", true)), sawLockGone(stating("1", true))), false, stated},
		{"lock collected, but the lock watch failed since: the last version seen may not be the last", append(forceDeleted(stating("1", true)),
			sawLockGone(stating("1", true)), func(c *core) { c.setLockErr(errors.New("watch failed"), t0); c.setLockErr(nil, t0) }), false, full},
		{"an explicit grace is kept", forceDeleted(stating("1", true)), true, full},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := follower()
			c.cfg.graceDerived = !tc.explicit
			for _, s := range tc.steps {
				s(c)
			}
			a := c.judge()
			if a.judged == nil || a.judged.proven {
				t.Fatalf("judged %+v; want an unproven acquisition", a.judged)
			}
			if got, _ := c.graceFor(a.judged, 1); got != tc.want {
				t.Fatalf("graceFor = %s; want %s", got, tc.want)
			}
		})
	}
}

func TestStopsWithinAnnotation(t *testing.T) {
	l := newLock("ns", "lock", podA, t0, true, 350*time.Millisecond)
	if got := l.Annotations[StopsWithinAnnotation]; got != "350ms a_uid-a" {
		t.Fatalf("newLock states %q; want %q", got, "350ms a_uid-a")
	}
	if got := stopsWithinOf(l); got != 350*time.Millisecond {
		t.Fatalf("stopsWithinOf(newLock) = %s", got)
	}
	// A takeover states its own bound, or removes the previous holder's.
	if got := takenOver(l, podB, t0, true, 0).Annotations[StopsWithinAnnotation]; got != "" {
		t.Fatalf("a takeover that states nothing kept %q", got)
	}
	if got := stopsWithinOf(takenOver(l, podB, t0, true, time.Second)); got != time.Second {
		t.Fatalf("stopsWithinOf(takenOver) = %s; want 1s", got)
	}
	if got := releasedLease(l, t0, true).Annotations[StopsWithinAnnotation]; got != "" {
		t.Fatalf("a release kept %q", got)
	}
	for _, bad := range []string{"", "350ms", "350ms b_uid-b", "-1s a_uid-a", "soon a_uid-a", "0s a_uid-a"} {
		l.Annotations[StopsWithinAnnotation] = bad
		if got := stopsWithinOf(l); got != 0 {
			t.Errorf("stopsWithinOf(%q) = %s; want 0 (none)", bad, got)
		}
	}
}
