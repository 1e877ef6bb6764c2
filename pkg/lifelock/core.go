package lifelock

import (
	"cmp"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// This file is the lock's decision core: what a candidate has observed of the cluster, where it stands with
// the lock, and every judgement made on them: what Get answers, what Create and Update may write, when an
// acquisition may report success, when a leader has lost. It does no I/O, starts nothing and reads no clock.
// The Lock (lock.go, watch.go) feeds it watch events and the outcome of its writes, passes the time in, and
// carries out what it decides; the simulation in sim_test.go drives the same core through many schedules.

// phase is where this process stands with the lock. It only moves forward: following → leading → lost or
// released. A lock that has left "leading" never acquires again.
type phase int

const (
	following phase = iota // has never held a term in this process
	leading
	lost
	released
)

// judgedKind is what Get decided the elector may do next.
type judgedKind int

const (
	judgedAbsent   judgedKind = iota + 1 // no lock: Create may acquire
	judgedOurs                           // held by this Pod's UID (a restarted container, or a write of ours whose reply was lost): Update re-acquires
	judgedTakeover                       // free, released, expired or held by a gone holder: Update takes over
)

// judgement is the decision Get handed to the elector; Create and Update act on exactly it.
type judgement struct {
	kind  judgedKind
	lease *coordinationv1.Lease // the object judged (nil when absent); its resourceVersion is the write precondition
	// proven: every earlier holder is proven stopped, so the acquisition needs no grace and writes
	// SettledAnnotation.
	proven bool
	// holderStops is the self-fencing bound the only holder that may still run stated
	// (StopsWithinAnnotation): the grace an unproven acquisition pays instead of the configured one. Zero
	// when unknown: none stated, or holders before it may still run (the version was not settled).
	holderStops time.Duration
	reason      string // why the lock may be taken, for logs and Events
	metric      string // the reason label of lifelock_acquisitions_total
	previous    string // the previous holder's identity, for logs and Events
	events      int    // the lock events observed when it was judged
}

// answer is one Get verdict.
type answer struct {
	record  *resourcelock.LeaderElectionRecord // nil: the lock does not exist (NotFound)
	judged  *judgement                         // set when the elector may act on the answer
	held    bool                               // held by someone else: a follower may wait for a change
	confirm *PodRef                            // the holder's Pod must be confirmed gone by a live GET first
}

// objectView is what one single-object watch has shown.
type objectView[T any] struct {
	name   string
	synced bool
	obj    *T    // nil when absent
	err    error // the watch's last failure; nil while it works
}

// pendingWrite is an acquisition in progress: a write of ours (or, re-acquiring, the object found), until
// the watch shows it and its grace has passed.
type pendingWrite struct {
	uid, judgedRV string
	seen          bool
	// intervened: another version of the lock came between the judgement and this write (a creation's
	// only precondition is that the lock is absent), so what the judgement knew of the holders no longer
	// holds: that version's holder may still run.
	intervened bool
	proven     bool
	// shortened: the acquisition waits less than the full grace, because it is proven or because the only
	// holder that may still run stated a shorter bound. Both rest on the judgement, so an intervening
	// version voids them.
	shortened bool
	grace     time.Duration // the full grace an acquisition whose judgement went stale pays
	graceEnd  time.Time
	started   time.Time
}

// confirmUnseenAfter is how long an acquisition waits for the watch to show its write before it reads the
// lock live instead: a write deleted while the watch was failing is never shown, and would otherwise be
// waited for forever.
const confirmUnseenAfter = time.Second

// coreConfig is what the core needs of Options.
type coreConfig struct {
	desc         string        // the lock's namespace/name, for errors
	grace        time.Duration // Options.AcquisitionGrace
	graceDerived bool          // the grace was derived from the timings, not set explicitly
	// leaseDuration is the elector lease duration the timings assume; a longer one handed in a record
	// means the elector runs slower timings than the grace covers.
	leaseDuration time.Duration
	outOfService  bool // Options.TakeOverFromOutOfServiceNodes
}

// core is one candidate's decision state. The Lock guards it with its mutex.
type core struct {
	self     PodRef
	identity string
	cfg      coreConfig

	// socketHeld: this process holds the per-Pod socket, so no other process of this Pod is a candidate.
	socketHeld bool

	lockSynced      bool
	lock            *coordinationv1.Lease // the lock as watched (canonical form); nil when absent
	lockErr         error                 // the lock watch's last failure; nil while it works
	lockBrokenSince time.Time             // when lockErr was first set

	// The last lock version seen, deleted or not: a lock that vanishes is judged by its last state.
	holder   *PodRef // its holder's Pod (nil: released, or a plain client-go lease)
	holderID string  // its holder identity
	settled  bool    // it carried SettledAnnotation
	// holderStops is the self-fencing bound its holder stated (StopsWithinAnnotation; 0: none).
	holderStops time.Duration
	releasedBy  string // it was released, by this holder
	lockEvents  int    // lock events observed so far
	// gap: versions this candidate never saw may have come after the last one it saw (the lock watch failed
	// since, or the lock was seen deleted only by a re-list, its final state unknown), so, while the lock is
	// absent, that last version proves nothing.
	gap bool

	pod     objectView[corev1.Pod]  // the holder's Pod (this Pod's own while leading)
	node    objectView[corev1.Node] // the holder's Node, when Nodes may be read
	stopped map[string]bool         // Pod UIDs seen being deleted gracefully with every container terminated
	// ended: Pod UIDs the Pod watch showed deleted. A UID is never reused, so a decision that rests on such
	// an event needs no live confirmation. One that rests on the Pod's absence from a list (which may come
	// from a lagging cache), on another Pod of the same name, or on a terminal phase (the API server lets
	// anyone move a Pod out of one) does.
	ended map[string]bool

	phase   phase
	term    Term   // the term this process won (zero until it leads)
	termUID string // the lock object's UID while leading
	judged  *judgement
	pending *pendingWrite
}

func newCore(self PodRef, cfg coreConfig) *core {
	return &core{self: self, identity: identityFor(self), cfg: cfg, stopped: map[string]bool{}, ended: map[string]bool{}}
}

// observeLock applies one event of the lock watch. lease is the lock in canonical form: as stored, or, when
// deleted, its last state.
func (c *core) observeLock(lease *coordinationv1.Lease, deleted bool) {
	c.lockEvents++
	if p := c.pending; p != nil {
		switch {
		case string(lease.UID) == p.uid && (deleted || lease.ResourceVersion != p.judgedRV):
			p.seen = true
		case !p.seen && string(lease.UID) != p.uid:
			p.intervened = true
		}
	}
	c.settled = settledOf(lease)
	c.holderStops = stopsWithinOf(lease)
	c.releasedBy = ""
	if owner, ok := lockHolder(lease); ok {
		c.holder, c.holderID = &owner, holderOf(lease)
	} else {
		if holderOf(lease) == "" {
			c.releasedBy = cmp.Or(lease.Annotations[ReleasedAnnotation], c.holderID, "its holder")
		}
		c.holder, c.holderID = nil, holderOf(lease)
	}
	c.gap = false
	if deleted {
		c.lock = nil
	} else {
		c.lock = lease
	}
}

// observeLockVanished applies a deletion seen only by a re-list: lease is the last state this candidate
// knew, not necessarily the last one.
func (c *core) observeLockVanished(lease *coordinationv1.Lease) {
	c.observeLock(lease, true)
	c.gap = true
}

// setLockErr records the lock watch's state: err from a failed list or watch, nil once one is established.
func (c *core) setLockErr(err error, now time.Time) {
	if err != nil && c.lockErr == nil {
		c.lockBrokenSince = now
	}
	if err != nil {
		c.gap = true // a re-list follows: a version created and deleted meanwhile shows no event at all
	}
	c.lockErr = err
}

// wantPod names the Pod whose watch the core needs: the last holder's ("" before any).
func (c *core) wantPod() string {
	if c.holder != nil {
		return c.holder.Name
	}
	return c.pod.name
}

// wantNode names the Node whose watch the out-of-service policy and the stuck-holder diagnosis need: the
// watched holder Pod's ("" if unknown).
func (c *core) wantNode() string {
	if c.pod.obj != nil && c.pod.obj.Spec.NodeName != "" {
		return c.pod.obj.Spec.NodeName
	}
	return c.node.name
}

// watchPod starts over the view of the holder Pod, now watched by name.
func (c *core) watchPod(name string) { c.pod = objectView[corev1.Pod]{name: name} }

// watchNode starts over the view of the holder's Node, now watched by name.
func (c *core) watchNode(name string) { c.node = objectView[corev1.Node]{name: name} }

// observePod applies one event of the watch of the Pod named name (its last state when deleted).
func (c *core) observePod(name string, pod *corev1.Pod, deleted bool) {
	if c.pod.name != name {
		return // a watch that has been replaced
	}
	c.noteStopped(pod)
	if deleted {
		c.ended[string(pod.UID)] = true
		c.pod.obj = nil
	} else {
		c.pod.obj = pod
	}
}

// noteStopped remembers a Pod seen in the state kubelet writes before it removes a gracefully deleted Pod.
func (c *core) noteStopped(pod *corev1.Pod) {
	if provenStopped(pod) {
		c.stopped[string(pod.UID)] = true
	}
}

// observeNode applies one event of the watch of the Node named name.
func (c *core) observeNode(name string, node *corev1.Node, deleted bool) {
	if c.node.name != name {
		return
	}
	if deleted {
		c.node.obj = nil
	} else {
		c.node.obj = node
	}
}

// podVerdict says what the Pod watch shows of h: its verdict, or podUnknownVerdict while it is not watched
// or not synced.
func (c *core) podVerdict(h PodRef) podVerdict {
	if c.pod.name != h.Name || !c.pod.synced {
		return podUnknownVerdict
	}
	v := judgePod(c.pod.obj, h.UID)
	if v == podAlive && c.cfg.outOfService {
		if c.node.name != c.pod.obj.Spec.NodeName || !c.node.synced {
			return podUnknownVerdict
		}
		if c.node.obj != nil && outOfService(c.node.obj) {
			return podOutOfService
		}
	}
	return v
}

// toConfirm returns the holder h whose end a decision must confirm by a live GET, or nil if the Pod watch
// showed an end nothing undoes: its Pod deleted (ended), or its containers stopped for good (stopped: a
// kubelet writes that state only once it has stopped them, and never starts them again, whatever is written
// to the Pod's status afterwards).
func (c *core) toConfirm(h PodRef) *PodRef {
	if c.ended[h.UID] || c.stopped[h.UID] {
		return nil
	}
	return &h
}

// judge decides what the elector sees, from the watched state.
func (c *core) judge() answer {
	a := c.judgeView()
	if a.judged != nil {
		a.judged.events = c.lockEvents
	}
	return a
}

// judgeView is judge without the bookkeeping.
//
// A takeover or a creation after a holder is proven (no acquisition grace) only if every earlier holder
// is: the holder was seen stopped (its Pod deleted gracefully with every container terminated, or it
// released the lock, or it is this Pod, whose other processes the socket excludes) and the lock version it
// held was settled (SettledAnnotation: the holders before it were proven stopped too). Anything less pays
// the grace.
func (c *core) judgeView() answer {
	held := func(id string, base resourcelock.LeaderElectionRecord) answer {
		r := heldRecord(id, base)
		return answer{record: &r, held: true}
	}
	if !c.socketHeld {
		return held(c.identity+" (another process of this Pod)", resourcelock.LeaderElectionRecord{})
	}
	if c.lockErr != nil && c.phase == following {
		// The watched lock may be stale: a candidate acquires only on a working watch.
		return held(cmp.Or(c.holderID, "unknown")+" (lock watch failing)", resourcelock.LeaderElectionRecord{})
	}
	lease := c.lock
	if lease == nil {
		if h := c.holder; h != nil && h.UID != c.self.UID {
			switch v := c.podVerdict(*h); v {
			case podAlive, podUnknownVerdict:
				// The lock vanished while its holder's Pod lives (a foreground delete, or by hand): the
				// holder is self-fencing; wait for its Pod to go.
				return held(c.holderID, resourcelock.LeaderElectionRecord{})
			default:
				j := &judgement{kind: judgedAbsent, proven: !c.gap && c.settled && c.stopped[h.UID], reason: v.String(), metric: v.metric(), previous: c.holderID}
				if !c.gap && c.settled {
					j.holderStops = c.holderStops
				}
				return answer{confirm: c.toConfirm(*h), judged: j}
			}
		}
		if c.releasedBy != "" {
			// Released by its holder and then deleted (a ConfigMap lock).
			return answer{judged: &judgement{kind: judgedAbsent, proven: !c.gap && c.settled, reason: "lock released", metric: "released", previous: c.releasedBy}}
		}
		// Never seen held (unproven: a holder this candidate never saw may still run), or last held by this
		// Pod (the socket proves no other process of this Pod runs).
		return answer{judged: &judgement{kind: judgedAbsent, proven: !c.gap && c.holder != nil && c.settled, reason: "lock absent", metric: "created"}}
	}
	base := recordOf(lease)
	if lease.DeletionTimestamp != nil {
		return held(holderOf(lease)+" (lock being deleted)", base)
	}
	if owner, ok := lockHolder(lease); ok {
		if owner.UID == c.self.UID {
			r := heldRecord(c.identity, base)
			return answer{record: &r, judged: &judgement{kind: judgedOurs, lease: lease, proven: settledOf(lease), reason: "held by this Pod", metric: "container_restart"}}
		}
		switch v := c.podVerdict(owner); v {
		case podAlive, podUnknownVerdict:
			return held(holderOf(lease), base)
		default:
			r := freeRecord(base)
			j := &judgement{kind: judgedTakeover, lease: lease, proven: settledOf(lease) && c.stopped[owner.UID], reason: v.String(), metric: v.metric(), previous: holderOf(lease)}
			if settledOf(lease) {
				j.holderStops = stopsWithinOf(lease)
			}
			return answer{record: &r, confirm: c.toConfirm(owner), judged: j}
		}
	}
	if holderOf(lease) == "" {
		r := freeRecord(base)
		return answer{record: &r, judged: &judgement{kind: judgedTakeover, lease: lease, proven: settledOf(lease), reason: "lock released", metric: "released", previous: c.releasedBy}}
	}
	// A plain client-go lease: the elector judges its expiry by its own clock, as client-go candidates do.
	return answer{record: &base, judged: &judgement{kind: judgedTakeover, lease: lease, reason: "lease expired", metric: "lease_expired", previous: holderOf(lease)}}
}

// take returns (and consumes) Get's decision if it allows one of kinds.
func (c *core) take(kinds ...judgedKind) (*judgement, error) {
	switch c.phase {
	case leading:
		// The elector acquires again only if it no longer sees the lock as ours: it was lost.
		reason := c.lossOf(c.termUID)
		c.lose()
		return nil, fmt.Errorf("lock %s: %w: %s; a lost lock never acquires again; exit and restart", c.cfg.desc, ErrLockLost, reason)
	case lost:
		return nil, fmt.Errorf("lock %s: %w: a lost lock never acquires again; exit and restart", c.cfg.desc, ErrLockLost)
	case released:
		return nil, fmt.Errorf("lock %s: %w", c.cfg.desc, ErrReleased)
	}
	j := c.judged
	c.judged = nil
	if j != nil {
		for _, k := range kinds {
			if j.kind == k {
				return j, nil
			}
		}
	}
	return nil, fmt.Errorf("lock %s: %w: it is not free", c.cfg.desc, ErrNotAcquired)
}

// graceFor is how long an acquisition judged j waits, after its write, before it reports success: nothing
// when proven; with a derived grace, the bound the only holder that may still run stated, if it did; else
// the configured grace. recordLease is the lease duration, in whole seconds, of the record client-go's
// elector handed to Create or Update. An elector running a longer lease duration than the timings the grace
// was derived from runs unknown timings: the grace is raised to cover the slowest self-fencing any valid
// timings with that lease duration allow, and raised says so.
func (c *core) graceFor(j *judgement, recordLease int) (grace time.Duration, raised bool) {
	if j.proven {
		return 0, false
	}
	if c.cfg.graceDerived && j.holderStops > 0 {
		return j.holderStops, false
	}
	grace = c.cfg.grace
	if c.cfg.graceDerived && time.Duration(recordLease)*time.Second > c.cfg.leaseDuration {
		if worst := worstCaseGrace(recordLease); worst > grace {
			return worst, true
		}
	}
	return grace, false
}

// worstCaseGrace covers every elector whose lease duration is leaseSeconds in whole seconds: client-go
// requires RenewDeadline < LeaseDuration and RetryPeriod < RenewDeadline / 1.2.
func worstCaseGrace(leaseSeconds int) time.Duration {
	lease := time.Duration(leaseSeconds+1) * time.Second
	return AcquisitionGraceFor(lease*5/6, lease)
}

// startAcquisition records the object an acquisition judged j wrote (or, re-acquiring, found), judged at
// resourceVersion judgedRV ("" for a creation or a re-acquisition), so that the watch can show it, and
// its grace, ending at now + grace.
func (c *core) startAcquisition(written *coordinationv1.Lease, judgedRV string, j *judgement, grace time.Duration, now time.Time) {
	full, _ := c.graceFor(&judgement{}, 0)
	p := &pendingWrite{uid: string(written.UID), judgedRV: judgedRV, proven: j.proven, grace: max(grace, full), graceEnd: now.Add(grace), started: now}
	p.shortened = grace < p.grace
	since := c.lockEvents - j.events // lock events since the judgement
	if c.lock != nil && c.lock.UID == written.UID && c.lock.ResourceVersion != judgedRV {
		p.seen = true
		since-- // one of them is this write
	}
	if j.kind == judgedAbsent && since > 0 {
		p.intervened = true
	}
	c.pending = p
}

// acquisitionState is where an acquisition in progress stands.
type acquisitionState int

const (
	acquisitionWaiting acquisitionState = iota // for the watch to show the write, or for the grace to pass
	acquisitionLead                            // the write is seen, still ours, and the grace has passed
	acquisitionLost                            // the write is seen and the lock is no longer ours
	// acquisitionConfirm: "still ours" must come from a live read of the lock and of this Pod
	// (confirmAcquisition), not from the watched state: the grace has passed but a watch is failing, or the
	// watch has not shown the write for confirmUnseenAfter.
	acquisitionConfirm
)

// acquisition says where the pending acquisition stands at now. A creation that another lock version came
// before, and that was proven or waits a stated bound, pays the full grace from now on: the holder of that
// version may still run, and neither the proof nor the bound was about it.
func (c *core) acquisition(now time.Time) acquisitionState {
	p := c.pending
	if p != nil && p.seen {
		p.voidShortening(now)
	}
	switch {
	case p == nil:
		return acquisitionLost
	case p.seen && c.lossOf(p.uid) != "":
		return acquisitionLost
	case !p.seen && !now.Before(p.started.Add(confirmUnseenAfter)):
		return acquisitionConfirm
	case p.seen && !now.Before(p.graceEnd) && c.watchBroken():
		return acquisitionConfirm
	case p.seen && !now.Before(p.graceEnd):
		return acquisitionLead
	}
	return acquisitionWaiting
}

// confirmAcquisition judges the pending acquisition at now from a live read of the lock and of this Pod
// (nil when absent). A write the watch never showed counts as seen if the lock is still ours, but what came
// between is unknown, so a proven acquisition then pays the grace.
func (c *core) confirmAcquisition(lock *coordinationv1.Lease, pod *corev1.Pod, now time.Time) acquisitionState {
	p := c.pending
	if p == nil || c.withLive(lock, pod).lossOf(p.uid) != "" {
		c.pending = nil
		return acquisitionLost
	}
	if !p.seen {
		p.seen, p.intervened = true, true
	}
	p.voidShortening(now)
	if now.Before(p.graceEnd) {
		return acquisitionWaiting
	}
	return acquisitionLead
}

// voidShortening makes an acquisition whose judgement went stale (another version intervened) pay the full
// grace from now on, if it was to wait less.
func (p *pendingWrite) voidShortening(now time.Time) {
	if p.intervened && p.shortened {
		p.proven, p.shortened, p.graceEnd = false, false, now.Add(p.grace)
	}
}

// acquisitionWake is when the pending acquisition next needs a look, short of a change of the view: the end
// of its grace, or when an unseen write is to be confirmed live.
func (c *core) acquisitionWake() time.Time {
	p := c.pending
	switch {
	case p == nil:
		return time.Time{}
	case !p.seen:
		return p.started.Add(confirmUnseenAfter)
	}
	return p.graceEnd
}

// lead makes this process the leader of written, the object its acquisition wrote (or found).
func (c *core) lead(written *coordinationv1.Lease) {
	c.pending = nil
	c.phase, c.termUID = leading, string(written.UID)
	c.term = Term{Number: ptrInt(written.Spec.LeaseTransitions), LockUID: string(written.UID), Revision: written.ResourceVersion}
}

// abandon ends an acquisition that will not lead (its context ended during the grace). It returns the
// version to release and whether that release is settled: the acquisition's own mark, since this
// candidate proves nothing about the holders before it.
func (c *core) abandon(written *coordinationv1.Lease) (cur *coordinationv1.Lease, settled bool) {
	c.pending = nil
	cur = written
	if c.lock != nil && c.lock.UID == written.UID {
		cur = c.lock
	}
	return cur, settledOf(written)
}

// renew judges the leader's renewal from the watched state: "" while the lock is still ours, else why it is
// lost (the phase moves to lost).
func (c *core) renew() string {
	reason := c.lossOf(c.termUID)
	if reason != "" {
		c.lose()
	}
	return reason
}

// watchBroken reports whether a watch the leader's renewal relies on (the lock's, its own Pod's) is
// failing, so that the watched state may be stale.
func (c *core) watchBroken() bool {
	return c.lockErr != nil || (c.pod.name == c.self.Name && c.pod.err != nil)
}

// withLive returns a copy of the core whose view of the lock and of this Pod is what a live read returned
// (nil when absent), to judge a renewal while a watch is broken.
func (c *core) withLive(lock *coordinationv1.Lease, pod *corev1.Pod) *core {
	live := *c
	live.lock = lock
	live.pod = objectView[corev1.Pod]{name: c.self.Name, synced: true, obj: pod}
	return &live
}

// lose marks the lock lost; it reports whether this process was leading (so the loss is news).
func (c *core) lose() bool {
	was := c.phase
	c.phase = lost
	return was == leading
}

// mayRelease returns the version a leader releases on shutdown, or why it may not.
func (c *core) mayRelease() (*coordinationv1.Lease, error) {
	if c.phase != leading {
		if c.phase == lost {
			return nil, fmt.Errorf("releasing lock %s: %w", c.cfg.desc, ErrLockLost)
		}
		return nil, fmt.Errorf("releasing lock %s: not the holder", c.cfg.desc)
	}
	if reason := c.lossOf(c.termUID); reason != "" {
		c.lose()
		return nil, fmt.Errorf("releasing lock %s: %w: %s", c.cfg.desc, ErrLockLost, reason)
	}
	return c.lock, nil
}

// lossOf says why the lock object uid is not (or no longer) held by this Pod ("" if it is).
func (c *core) lossOf(uid string) string {
	lease := c.lock
	switch {
	case lease == nil:
		return "lock deleted"
	case string(lease.UID) != uid:
		return "lock deleted and created again"
	case lease.DeletionTimestamp != nil:
		return "lock marked for deletion"
	case holderOf(lease) != c.identity:
		return "lock held by " + holderOf(lease)
	}
	if owner, ok := podOwner(lease); !ok || owner.UID != c.self.UID {
		return "lock no longer owned by this Pod"
	}
	switch v := c.podVerdict(c.self); v {
	case podMissing, podReplaced:
		return "this Pod was deleted"
	case podTerminal:
		return "this Pod is " + string(c.pod.obj.Status.Phase)
	case podOutOfService:
		return "this Pod's Node is tainted " + OutOfServiceTaint
	}
	return ""
}

func ptrInt(p *int32) int32 {
	if p == nil {
		return 0
	}
	return *p
}
