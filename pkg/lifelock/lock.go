package lifelock

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// This file is the algorithm: how Get, Create and Update answer client-go's LeaderElector. The watched state
// they read is kept in watch.go; the lock format and the pure judgments are in record.go.

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
	judgedOurs                           // held by this Pod's UID (a restarted container): Update re-acquires
	judgedTakeover                       // free, released, expired or held by a gone holder: Update takes over
)

// judgement is the decision Get handed to the elector; Create and Update act on exactly it.
type judgement struct {
	kind     judgedKind
	lease    *coordinationv1.Lease // the object judged (nil when absent); its resourceVersion is the write precondition
	proven   bool                  // the previous holder is proven stopped: no acquisition grace
	reason   string                // why the lock may be taken, for logs and Events
	metric   string                // the reason label of lifelock_acquisitions_total
	previous string                // the previous holder's identity, for logs and Events
	// mayVanish: the lock's owner Pod was confirmed gone by a live GET (so the garbage collector may be
	// deleting the lock right now), or its holder released it (and may be deleting it).
	mayVanish bool
}

// Lock is a leader-for-life lock: a resourcelock.Interface over a coordination.k8s.io/v1 Lease (or, with
// Options.Kind, a ConfigMap) owned by the holder's Pod. Hand it to client-go's LeaderElector (or to controller-runtime through
// manager.Options.LeaderElectionResourceLockInterface) with timings like DefaultRetryPeriod,
// DefaultRenewDeadline and DefaultLeaseDuration. A Lock serves one election in one process: once it has
// been lost or released it refuses to acquire again.
type Lock struct {
	client    kubernetes.Interface
	store     store
	namespace string
	name      string
	own       PodRef
	identity  string
	opts      Options
	log       logr.Logger

	startOnce sync.Once
	ctx       context.Context // lifetime of the watches and the socket
	stop      context.CancelFunc

	writing      sync.WaitGroup // Events being written (observe.go)
	eventErrOnce sync.Once

	mu         sync.Mutex
	changed    chan struct{} // closed and replaced on every change of what is below
	view                     // the watched state (watch.go)
	socketHeld bool
	watchNodes bool // this candidate may watch Nodes: the holder's Node is watched
	phase      phase
	termUID    string     // the lock object's UID while leading
	term       Term       // the term this process won (zero until it leads)
	judged     *judgement // Get's last actionable decision
	since      time.Time  // when this candidate first asked for the lock
	stuck      string     // the holder this candidate last reported as looking stuck, "" if none
}

var _ resourcelock.Interface = &Lock{}

// New returns a Lock named name for the Pod this process runs in. It finds that Pod (see Options.PodName),
// reads its UID, and checks that the credentials in cfg may do what the lock needs; any failure is returned
// as one error that says what to fix (ErrNotInCluster, ErrPodNameUnknown, ErrPodNotFound,
// ErrInvalidLockName, ErrMissingPermission). Watches start on first use; Close stops them.
func New(ctx context.Context, cfg *rest.Config, name string, opts Options) (*Lock, error) {
	if err := validateLockName(name); err != nil {
		return nil, err
	}
	if cfg == nil {
		return nil, errors.New("creating lock: the rest.Config is nil")
	}
	cfg = rest.AddUserAgent(rest.CopyConfig(cfg), "lifelock")
	// Protobuf, as Kubernetes' own components use for built-in types: every candidate decodes each change
	// of the lock and of its holder's Pod, and with many candidates that decoding is what a failover waits on.
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating lock %s: %w", name, err)
	}
	return NewForClient(ctx, client, name, opts)
}

// NewForClient is New with a ready clientset.
func NewForClient(ctx context.Context, client kubernetes.Interface, name string, opts Options) (*Lock, error) {
	if err := validateLockName(name); err != nil {
		return nil, err
	}
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("lock %s: invalid options: %w", name, err)
	}
	opts = opts.setDefaults()
	own, err := resolveOwnPod(ctx, client, opts.PodName, opts.PodNamespace)
	if err != nil {
		return nil, err
	}
	ns := opts.Namespace
	if ns == "" {
		ns = own.Namespace
	}
	st := newStore(opts.Kind, client, ns)
	nodes, err := checkPermissions(ctx, client, ns, st, opts.TakeOverFromOutOfServiceNodes, *opts.Logger)
	if err != nil {
		return nil, fmt.Errorf("lock %s/%s: %w", ns, name, err)
	}
	return &Lock{
		client:     client,
		store:      st,
		watchNodes: nodes,
		namespace:  ns,
		name:       name,
		own:        own,
		identity:   identityFor(own),
		opts:       opts,
		log:        opts.Logger.WithValues("lock", ns+"/"+name, "identity", identityFor(own)),
	}, nil
}

// start starts the watches and the socket once.
func (l *Lock) start() {
	l.startOnce.Do(func() {
		l.ctx, l.stop = context.WithCancel(context.Background())
		l.mu.Lock()
		l.changed = make(chan struct{})
		l.stopped = map[string]bool{}
		l.mu.Unlock()
		stuckHolder.WithLabelValues(l.name).Set(0) // the series exists from the start, for alerts
		l.startWatches()
		go l.holdSocket()
	})
}

// Close stops the lock's watches and frees its socket, and waits until the Events it recorded are written
// (the writes of one Event give up after 5 s). It does not release the lock: a held lock stays held until this Pod is
// gone (or the elector released it on cancel). Safe to call more than once.
func (l *Lock) Close() {
	l.start()
	l.stop()
	l.writing.Wait()
}

// Identity returns this candidate's holder identity: its Pod's name and UID.
func (l *Lock) Identity() string { return l.identity }

// Describe names the lock object.
func (l *Lock) Describe() string { return l.namespace + "/" + l.name }

// Pod returns the Pod this candidate runs in.
func (l *Lock) Pod() PodRef { return l.own }

// Holder returns the identity of the holder this candidate last saw owning the lock ("" if it has seen
// none), from its watch. It may name a holder whose lock has since vanished while its Pod lives.
func (l *Lock) Holder() string {
	l.start()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.holderID
}

// Kind returns the kind of object that holds the lock.
func (l *Lock) Kind() Kind { return l.opts.Kind }

// Term returns the term this process leads in, and false while it does not lead (before it has acquired
// the lock, and after it has lost or released it).
func (l *Lock) Term() (Term, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.term, l.phase == leading
}

// RecordEvent records client-go's elector events ("became leader", "stopped leading") on the lock object
// when Options.EventRecorder is set. Without it they are not recorded: the lock's own Events (BecameLeader,
// TookOver, LostLock, Released) say the same on the lock and on the Pod, and more exactly.
func (l *Lock) RecordEvent(s string) {
	if l.opts.EventRecorder == nil {
		return
	}
	l.mu.Lock()
	lease := l.lease
	l.mu.Unlock()
	l.opts.EventRecorder.Eventf(l.lockRef(lease), corev1.EventTypeNormal, "LeaderElection", "%s %s", l.identity, s)
}

// Check is a health check (for manager.AddHealthzCheck): it fails while this process leads and its watch
// of the lock has been broken for longer than Options.WatchFailureTolerance, since such a leader cannot see
// that it lost the lock. It never fails for a follower.
func (l *Lock) Check(_ *http.Request) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.phase != leading || l.watchErr == nil {
		return nil
	}
	if since := time.Since(l.brokenSince); since > l.opts.WatchFailureTolerance {
		return fmt.Errorf("lock %s: leading, but the lock watch has been failing for %s: %w", l.Describe(), since.Round(time.Second), l.watchErr)
	}
	return nil
}

// answer is one Get verdict.
type answer struct {
	record  *resourcelock.LeaderElectionRecord // nil: the lock does not exist (NotFound)
	judged  *judgement                         // set when the elector may act on the answer
	held    bool                               // held by someone else: a follower may wait for a change
	confirm *PodRef                            // the holder's Pod must be confirmed gone by a live GET first
}

// Get answers the elector from the watch. See the package documentation for the protocol.
func (l *Lock) Get(ctx context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	l.start()
	if err := l.waitSynced(ctx); err != nil {
		return nil, nil, err
	}
	l.mu.Lock()
	if l.since.IsZero() {
		l.since = time.Now()
	}
	l.mu.Unlock()
	deadline := time.Now().Add(l.opts.FollowerWait)
	var spreadUntil time.Time // when this follower may try for a lock it found free (see Options.AcquireSpread)
	for {
		l.mu.Lock()
		ch := l.changed
		a := l.judgeLocked()
		mayWait := l.phase == following
		l.mu.Unlock()

		if mayWait && a.judged != nil && a.judged.kind != judgedOurs && *l.opts.AcquireSpread > 0 {
			if spreadUntil.IsZero() {
				spreadUntil = time.Now().Add(rand.N(*l.opts.AcquireSpread))
			}
			if time.Now().Before(spreadUntil) {
				if !l.waitChange(ctx, ch, time.Until(spreadUntil)) {
					return nil, nil, l.closedErr(ctx)
				}
				continue // judge again: another candidate may have taken it
			}
		}
		if a.confirm != nil {
			gone, err := l.confirmGone(ctx, *a.confirm)
			if err != nil {
				return nil, nil, err
			}
			if !gone { // the Pod watch lags the live state: the holder is alive after all
				base := resourcelock.LeaderElectionRecord{}
				if a.record != nil {
					base = *a.record
				}
				r := heldRecord(a.judged.previous, base)
				a = answer{record: &r, held: true}
			}
		}
		if mayWait {
			l.diagnose(a)
		}
		if a.held && mayWait && time.Now().Before(deadline) {
			spreadUntil = time.Time{}
			wait := time.Until(deadline)
			if t := l.graceEnds(); !t.IsZero() && time.Until(t) < wait {
				wait = max(time.Until(t), 0) + time.Millisecond // wake when the holder's grace period ends, to diagnose it
			}
			if !l.waitChange(ctx, ch, wait) {
				return nil, nil, l.closedErr(ctx)
			}
			continue
		}
		l.mu.Lock()
		l.judged = a.judged
		l.mu.Unlock()
		if a.record == nil {
			return nil, nil, apierrors.NewNotFound(l.store.resource(), l.name)
		}
		return a.record, rawRecord(*a.record), nil
	}
}

// judgeLocked decides what the elector sees. Lock.mu must be held.
func (l *Lock) judgeLocked() answer {
	held := func(id string, base resourcelock.LeaderElectionRecord) answer {
		r := heldRecord(id, base)
		return answer{record: &r, held: true}
	}
	if !l.socketHeld {
		return held(l.identity+" (another process of this Pod)", resourcelock.LeaderElectionRecord{})
	}
	lease := l.lease
	if lease == nil {
		if h := l.holder; h != nil && h.UID != l.own.UID {
			switch v := l.holderPodLocked(*h); v {
			case podAlive, podUnknownVerdict:
				// The lock vanished while its holder's Pod lives (a foreground delete, or by hand): the
				// holder is self-fencing; wait for its Pod to go.
				return held(l.holderID, resourcelock.LeaderElectionRecord{})
			default:
				return answer{confirm: h, judged: &judgement{kind: judgedAbsent, proven: l.stopped[h.UID], reason: v.String(), metric: v.metric(), previous: l.holderID}}
			}
		}
		if l.releasedBy != "" {
			// Released by its holder (after its runnables stopped) and then deleted: a ConfigMap lock.
			return answer{judged: &judgement{kind: judgedAbsent, proven: true, reason: "lock released", metric: "released", previous: l.releasedBy}}
		}
		// Never held, or last held by this Pod: the socket proves no other process of this Pod runs.
		return answer{judged: &judgement{kind: judgedAbsent, proven: l.holder != nil, reason: "lock absent", metric: "created"}}
	}
	base := recordOf(lease)
	if lease.DeletionTimestamp != nil {
		return held(holderOf(lease)+" (lock being deleted)", base)
	}
	if owner, ok := podOwner(lease); ok {
		if owner.UID == l.own.UID {
			r := heldRecord(l.identity, base)
			return answer{record: &r, judged: &judgement{kind: judgedOurs, lease: lease, proven: true, reason: "held by this Pod", metric: "container_restart"}}
		}
		switch v := l.holderPodLocked(owner); v {
		case podAlive, podUnknownVerdict:
			return held(holderOf(lease), base)
		default:
			r := freeRecord(base)
			return answer{record: &r, confirm: &owner, judged: &judgement{kind: judgedTakeover, lease: lease, proven: l.stopped[owner.UID], reason: v.String(), metric: v.metric(), previous: holderOf(lease), mayVanish: true}}
		}
	}
	if holderOf(lease) == "" {
		r := freeRecord(base)
		return answer{record: &r, judged: &judgement{kind: judgedTakeover, lease: lease, proven: true, reason: "lock released", metric: "released", previous: l.releasedBy, mayVanish: true}}
	}
	// A plain client-go lease: the elector judges its expiry by its own clock, as client-go candidates do.
	return answer{record: &base, judged: &judgement{kind: judgedTakeover, lease: lease, reason: "lease expired", metric: "lease_expired", previous: holderOf(lease)}}
}

// waitSynced waits until the lock watch has synced: a candidate acquires only on an established watch.
func (l *Lock) waitSynced(ctx context.Context) error {
	for {
		l.mu.Lock()
		synced, werr, ch := l.leaseSynced, l.watchErr, l.changed
		l.mu.Unlock()
		if synced {
			return nil
		}
		if werr != nil {
			return l.describeWatchErr(werr)
		}
		if !l.waitChange(ctx, ch, l.opts.FollowerWait) {
			return l.closedErr(ctx)
		}
	}
}

func (l *Lock) describeWatchErr(err error) error {
	if apierrors.IsForbidden(err) {
		gr := l.store.resource()
		return fmt.Errorf("watching lock %s: %w: grant verbs list and watch on %s in namespace %q (see %s): %w",
			l.Describe(), ErrMissingPermission, gr.String(), l.namespace, l.store.roleFile(), err)
	}
	return fmt.Errorf("watching lock %s: %w", l.Describe(), err)
}

func (l *Lock) closedErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return fmt.Errorf("lock %s is closed", l.Describe())
}

// confirmGone asks the API server whether the holder's Pod is really gone: the lock and Pod watches are not
// ordered with each other, so a takeover decision is confirmed by one live GET.
func (l *Lock) confirmGone(ctx context.Context, h PodRef) (bool, error) {
	pod, err := l.client.CoreV1().Pods(l.namespace).Get(ctx, h.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("confirming that holder Pod %s is gone: %w", h, err)
	}
	if provenStopped(pod) {
		l.mu.Lock()
		l.stopped[string(pod.UID)] = true
		l.mu.Unlock()
	}
	v := judgePod(pod, h.UID)
	if v == podAlive && l.opts.TakeOverFromOutOfServiceNodes && pod.Spec.NodeName != "" {
		node, err := l.client.CoreV1().Nodes().Get(ctx, pod.Spec.NodeName, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return false, nil // pod GC will delete the Pod; until then it counts as alive
		case err != nil:
			return false, fmt.Errorf("confirming that holder Pod %s is on an out-of-service Node: %w", h, err)
		}
		return outOfService(node), nil
	}
	return v != podAlive, nil
}

// Create acquires an absent lock by creating it, owned by this Pod. AlreadyExists means "not leader".
func (l *Lock) Create(ctx context.Context, _ resourcelock.LeaderElectionRecord) error {
	l.start()
	l.mu.Lock()
	j, err := l.takeJudgementLocked(judgedAbsent)
	l.mu.Unlock()
	if err != nil {
		return err
	}
	created, err := l.store.create(ctx, newLock(l.namespace, l.name, l.own, time.Now()))
	if err != nil {
		return fmt.Errorf("creating lock %s: %w", l.Describe(), err)
	}
	return l.finishAcquisition(ctx, created, "", j)
}

// Update confirms a held lock, takes over a free one, or (with an empty holder) releases it.
func (l *Lock) Update(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	l.start()
	switch ler.HolderIdentity {
	case "":
		return l.release(ctx)
	case l.identity:
	default:
		return fmt.Errorf("lock %s: asked to write holder %q, but this candidate is %q", l.Describe(), ler.HolderIdentity, l.identity)
	}
	l.mu.Lock()
	if l.phase == leading {
		// The renewal: confirm from the watch, write nothing.
		defer l.mu.Unlock()
		if reason := l.lossLocked(); reason != "" {
			l.loseLocked(reason)
			return fmt.Errorf("lock %s: %w: %s", l.Describe(), ErrLockLost, reason)
		}
		return nil
	}
	j, err := l.takeJudgementLocked(judgedOurs, judgedTakeover)
	if err != nil {
		l.mu.Unlock()
		return err
	}
	if j.kind == judgedOurs {
		// A restarted container of the holder's Pod: the socket proves the previous process is gone.
		defer l.mu.Unlock()
		if !l.oursLocked(string(j.lease.UID)) {
			return fmt.Errorf("lock %s: %w: it changed since it was read", l.Describe(), ErrNotAcquired)
		}
		l.leadLocked(j.lease, j)
		return nil
	}
	l.mu.Unlock()
	updated, err := l.store.takeOver(ctx, j.lease, takenOver(j.lease, l.own, time.Now()))
	if err != nil && j.mayVanish && apierrors.IsNotFound(err) {
		// The garbage collector may delete a gone holder's lock between Get's decision and this write (and a
		// releasing ConfigMap holder deletes its lock). The holder is gone or stopped, so the lock is free to
		// create now rather than after the elector's back-off.
		created, cerr := l.store.create(ctx, newLock(l.namespace, l.name, l.own, time.Now()))
		if cerr == nil {
			return l.finishAcquisition(ctx, created, "", j)
		}
	}
	if err != nil {
		return fmt.Errorf("taking over lock %s (%s): %w", l.Describe(), j.reason, err)
	}
	return l.finishAcquisition(ctx, updated, j.lease.ResourceVersion, j)
}

// takeJudgementLocked returns (and consumes) Get's decision if it allows one of kinds. Lock.mu must be held.
func (l *Lock) takeJudgementLocked(kinds ...judgedKind) (*judgement, error) {
	switch l.phase {
	case leading:
		// The elector acquires again only if it no longer sees the lock as ours: it was lost.
		reason := l.lossLocked()
		l.loseLocked(reason)
		return nil, fmt.Errorf("lock %s: %w: %s; a lost lock never acquires again; exit and restart", l.Describe(), ErrLockLost, reason)
	case lost:
		return nil, fmt.Errorf("lock %s: %w: a lost lock never acquires again; exit and restart", l.Describe(), ErrLockLost)
	case released:
		return nil, fmt.Errorf("lock %s: %w", l.Describe(), ErrReleased)
	}
	j := l.judged
	l.judged = nil
	if j != nil {
		for _, k := range kinds {
			if j.kind == k {
				return j, nil
			}
		}
	}
	return nil, fmt.Errorf("lock %s: %w: it is not free", l.Describe(), ErrNotAcquired)
}

// finishAcquisition waits, after a successful write, until the watch shows it and, unless the previous
// holder is proven stopped, for the acquisition grace; the lock must still be ours at the end. If ctx ends
// first, the lock is released again, so nothing is left held by a candidate that never led.
func (l *Lock) finishAcquisition(ctx context.Context, written *coordinationv1.Lease, judgedRV string, j *judgement) error {
	uid := string(written.UID)
	grace := *l.opts.AcquisitionGrace
	if j.proven {
		grace = 0
	}
	deadline := time.Now().Add(grace)
	l.mu.Lock()
	l.pending = &pendingWrite{uid: uid, judgedRV: judgedRV}
	if l.lease != nil && string(l.lease.UID) == uid && l.lease.ResourceVersion != judgedRV {
		l.pending.seen = true
	}
	l.mu.Unlock()
	for {
		l.mu.Lock()
		ch, seen, ours := l.changed, l.pending.seen, l.oursLocked(uid)
		if seen && !ours {
			l.pending = nil
			l.mu.Unlock()
			return fmt.Errorf("lock %s: %w: lost before leading", l.Describe(), ErrNotAcquired)
		}
		if seen && !time.Now().Before(deadline) {
			l.pending = nil
			l.leadLocked(written, j)
			l.mu.Unlock()
			return nil
		}
		l.mu.Unlock()
		wait := time.Until(deadline)
		if !seen || wait <= 0 {
			wait = l.opts.FollowerWait
		}
		if !l.waitChange(ctx, ch, wait) {
			l.abandon(written)
			return l.closedErr(ctx)
		}
	}
}

// abandon releases a lock this process wrote but never led with (its context ended during the grace).
func (l *Lock) abandon(written *coordinationv1.Lease) {
	l.mu.Lock()
	l.pending = nil
	cur := written
	if l.lease != nil && l.lease.UID == written.UID {
		cur = l.lease
	}
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.store.release(ctx, cur, l.identity); err != nil {
		// It stays held by this Pod until the Pod is gone; refuse to act on it from now on.
		l.mu.Lock()
		l.phase = lost
		l.mu.Unlock()
		l.log.Error(err, "Could not release a lock acquired during shutdown; it is freed when this Pod is gone")
	}
}

// oursLocked reports whether the watched lock is the object uid, held by this candidate, not being deleted.
// Lock.mu must be held.
func (l *Lock) oursLocked(uid string) bool {
	return l.lossOfLocked(uid) == ""
}

// lossLocked says why the lock this process leads with is lost ("" if it is not). Lock.mu must be held.
func (l *Lock) lossLocked() string { return l.lossOfLocked(l.termUID) }

func (l *Lock) lossOfLocked(uid string) string {
	lease := l.lease
	switch {
	case lease == nil:
		return "lock deleted"
	case string(lease.UID) != uid:
		return "lock deleted and created again"
	case lease.DeletionTimestamp != nil:
		return "lock marked for deletion"
	case holderOf(lease) != l.identity:
		return "lock held by " + holderOf(lease)
	}
	if owner, ok := podOwner(lease); !ok || owner.UID != l.own.UID {
		return "lock no longer owned by this Pod"
	}
	switch v := l.holderPodLocked(l.own); v {
	case podMissing, podReplaced:
		return "this Pod was deleted"
	case podTerminal:
		return "this Pod is " + string(l.pods.obj.Status.Phase)
	case podOutOfService:
		return "this Pod's Node is tainted " + OutOfServiceTaint
	}
	return ""
}

// release marks the lock free (client-go's release on cancel, after every leader runnable has stopped).
// It does not delete the lock: a deleted lock whose holder's Pod lives looks, to a follower, exactly like a
// lock that vanished under a live leader.
func (l *Lock) release(ctx context.Context) error {
	l.mu.Lock()
	if l.phase != leading {
		p := l.phase
		l.mu.Unlock()
		if p == lost {
			return fmt.Errorf("releasing lock %s: %w", l.Describe(), ErrLockLost)
		}
		return fmt.Errorf("releasing lock %s: not the holder", l.Describe())
	}
	if reason := l.lossLocked(); reason != "" {
		l.loseLocked(reason)
		l.mu.Unlock()
		return fmt.Errorf("releasing lock %s: %w: %s", l.Describe(), ErrLockLost, reason)
	}
	cur := l.lease
	l.mu.Unlock()
	if err := l.store.release(ctx, cur, l.identity); err != nil {
		return fmt.Errorf("releasing lock %s: %w", l.Describe(), err)
	}
	l.mu.Lock()
	l.phase = released
	l.mu.Unlock()
	l.log.Info("Released lock", "term", l.term.String())
	l.event(cur, corev1.EventTypeNormal, ReasonReleased, "%s released the lock on shutdown (term %s)", l.own.Name, l.term)
	l.Close()
	return nil
}

func ptrInt(p *int32) int32 {
	if p == nil {
		return 0
	}
	return *p
}
