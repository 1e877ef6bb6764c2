package lifelock

import (
	"context"
	"errors"
	"fmt"
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

// This file is the Lock: how Get, Create and Update answer client-go's LeaderElector. What they decide is
// decided by the core (core.go); this file carries it out: it waits on the watches (watch.go), confirms a
// gone holder with a live GET, writes the lock, and reports (events.go, diagnosis.go).

// Lock is a leader-for-life lock: a resourcelock.Interface over a coordination.k8s.io/v1 Lease (or, with
// Options.Kind, a ConfigMap) owned by the holder's Pod. Hand it to client-go's LeaderElector (or to
// controller-runtime through manager.Options.LeaderElectionResourceLockInterface) with the timings it was
// made for (Options.RetryPeriod, RenewDeadline and LeaseDuration; see TimingsFor). A Lock serves one
// election in one process: once it has been lost or released it refuses to acquire again.
type Lock struct {
	key       string // in inProcess
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

	writing      sync.WaitGroup // Events being written (events.go)
	eventErrOnce sync.Once
	graceWarned  sync.Once

	mu         sync.Mutex
	changed    chan struct{} // closed and replaced on every change of what is below
	core       *core         // every decision (core.go)
	podCancel  context.CancelFunc
	nodeCancel context.CancelFunc
	watchNodes bool      // this candidate may watch Nodes: the holder's Node is watched
	since      time.Time // when this candidate first asked for the lock
	spread     spreader  // this follower's adaptive spread (spread.go)
	stuck      string    // the holder this candidate last reported as looking stuck, "" if none
	// lostReported: the loss of this process's term has been reported.
	lostReported bool
	lostCh       chan struct{} // closed once the term is lost (reportLostLocked)
	lostAt       time.Time     // when the loss was reported
	lostOnce     sync.Once
	releasing    bool  // this process is writing its release: the watch shows that write, not a loss
	socketErr    error // the per-Pod socket cannot be taken (not because another process holds it)
}

var _ resourcelock.Interface = &Lock{}

// inProcess holds the locks (kind:namespace/name:Pod UID) that have a Lock in this process.
var inProcess sync.Map

// New returns a Lock named name for the Pod this process runs in. It finds that Pod (see Options.PodName),
// reads its UID, and checks that the credentials in cfg may do what the lock needs; any failure is returned
// as one error that says what to fix (ErrNotInCluster, ErrPodNameUnknown, ErrPodNotFound,
// ErrInvalidLockName, ErrNamespaceMismatch, ErrMissingPermission). Watches start on first use; Close stops
// them.
func New(ctx context.Context, cfg *rest.Config, name string, opts Options) (*Lock, error) {
	if err := validateLockName(name); err != nil {
		return nil, err
	}
	if cfg == nil {
		return nil, errors.New("creating lock: the rest.Config is nil")
	}
	client, err := kubernetes.NewForConfig(clientConfig(cfg))
	if err != nil {
		return nil, fmt.Errorf("creating lock %s: %w", name, err)
	}
	return NewForClient(ctx, client, name, opts)
}

// clientConfig is the copy of cfg that New's client uses: lifelock's user agent, protobuf, and no gzip.
func clientConfig(cfg *rest.Config) *rest.Config {
	cfg = rest.AddUserAgent(rest.CopyConfig(cfg), "lifelock")
	// Protobuf, as Kubernetes' own components use for built-in types: every candidate decodes each change
	// of the lock and of its holder's Pod, and with many candidates that decoding is what a failover waits on.
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	// No gzip: kube-apiserver compresses a watch stream for a client that accepts it, one flush per event,
	// which costs it a compressor per watcher and every candidate a decompressor reset per event, for
	// objects of a few hundred bytes. At N = 100 that was a tenth of the candidates' CPU in a failover.
	cfg.DisableCompression = true
	return cfg
}

// NewForClient is New with a ready clientset, used as it is (New's own client speaks protobuf and asks for
// uncompressed responses, which matters when many candidates watch one lock).
func NewForClient(ctx context.Context, client kubernetes.Interface, name string, opts Options) (*Lock, error) {
	if err := validateLockName(name); err != nil {
		return nil, err
	}
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("lock %s: invalid options: %w", name, err)
	}
	graceDerived := opts.AcquisitionGrace == nil
	opts = opts.setDefaults()
	own, err := resolveOwnPod(ctx, client, opts.PodName, opts.PodNamespace, opts.PodUID)
	if err != nil {
		return nil, err
	}
	ns := opts.Namespace
	if ns == "" {
		ns = own.Namespace
	}
	if ns != own.Namespace {
		return nil, fmt.Errorf("lock %s/%s: %w: the lock would live in namespace %q but this Pod runs in %q, and an "+
			"ownerReference cannot point across namespaces (the garbage collector would delete the lock at once, and "+
			"nobody would ever lead); leave the lock's namespace unset (manager.Options.LeaderElectionNamespace, "+
			"Options.Namespace) or set it to %q", ns, name, ErrNamespaceMismatch, ns, own.Namespace, own.Namespace)
	}
	st := newStore(opts.Kind, client, ns)
	nodes, err := checkPermissions(ctx, client, ns, name, st, opts.TakeOverFromOutOfServiceNodes, *opts.Logger)
	if err != nil {
		return nil, fmt.Errorf("lock %s/%s: %w", ns, name, err)
	}
	key := string(opts.Kind) + ":" + ns + "/" + name + ":" + own.UID
	if _, dup := inProcess.LoadOrStore(key, true); dup {
		return nil, fmt.Errorf("lock %s/%s: this process already has a Lock for it as Pod %s (one per lock and Pod: a second "+
			"would wait forever for the first on the per-Pod socket); Close the first one, or share it", ns, name, own.Name)
	}
	return &Lock{
		key:        key,
		client:     client,
		store:      st,
		watchNodes: nodes,
		namespace:  ns,
		name:       name,
		own:        own,
		identity:   identityFor(own),
		opts:       opts,
		log:        opts.Logger.WithValues("lock", ns+"/"+name, "identity", identityFor(own)),
		lostCh:     make(chan struct{}),
		spread:     newSpreader(*opts.AcquireSpread),
		core: newCore(own, coreConfig{
			desc:          ns + "/" + name,
			grace:         *opts.AcquisitionGrace,
			graceDerived:  graceDerived,
			leaseDuration: opts.LeaseDuration,
			outOfService:  opts.TakeOverFromOutOfServiceNodes,
		}),
	}, nil
}

// start starts the watches and the socket once.
func (l *Lock) start() {
	l.startOnce.Do(func() {
		l.ctx, l.stop = context.WithCancel(context.Background())
		l.mu.Lock()
		l.changed = make(chan struct{})
		l.mu.Unlock()
		initMetrics(l.name) // the series exist from the start, for alerts and increase()
		l.startWatches()
		go l.holdSocket()
	})
}

// Close stops the lock's watches and frees its socket, and waits until the Events it recorded are written
// (the writes of one Event give up after 5 s), except after a loss: a process that lost its lock must stop
// acting at once, not wait on the API server. It does not release the lock: a held lock stays held until
// this Pod is gone (or the elector released it on cancel). Safe to call more than once. A leader that
// closes its lock can no longer see a loss: close it only once the leader's work has stopped.
//
// The watches' goroutines end shortly after Close returns. The HTTP/2 connection of New's client stays in
// client-go's transport cache, as any client-go connection does: one per distinct TLS and transport setup,
// shared by every Lock built from one rest.Config, closed after 90 s idle (a goroutine-leak check must take
// its snapshot after a first New).
func (l *Lock) Close() {
	l.start()
	l.stop()
	inProcess.Delete(l.key)
	l.mu.Lock()
	lost, lostAt := l.core.phase == lost || l.lostReported, l.lostAt
	l.mu.Unlock()
	if !lost {
		l.writing.Wait()
		return
	}
	// A lost leader is exiting: its Events (LostLock) get until lostEventWait after the loss was reported,
	// and, if its leader work has stopped by then (Options.WorkStopped), until lostEventWaitIdle (nothing
	// acts meanwhile, so the longer wait delays only the exit); never the API server's whole timeout.
	written := make(chan struct{})
	go func() { l.writing.Wait(); close(written) }()
	for _, until := range []time.Duration{lostEventWait, lostEventWaitIdle} {
		wait := time.NewTimer(max(0, time.Until(lostAt.Add(until))))
		select {
		case <-written:
			wait.Stop()
			return
		case <-wait.C:
		}
		if l.opts.WorkStopped == nil || !l.opts.WorkStopped() {
			return
		}
	}
}

// lostEventWait bounds how long after its loss was reported a lost lock's Close waits for its Event writes
// (a LostLock Event takes a few milliseconds to write). A program that stops on Lost closes the lock right
// after the loss was reported, so the wait ends well inside the fence margin (DefaultFenceMargin); one that
// relies on the elector closes it the renew deadline later, inside the exit margin.
const lostEventWait = 50 * time.Millisecond

// lostEventWaitIdle is how long after its loss a lost lock's Close waits for its Event writes once its
// leader work is known to have stopped (Options.WorkStopped).
const lostEventWaitIdle = 500 * time.Millisecond

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
	return l.core.holderID
}

// Kind returns the kind of object that holds the lock.
func (l *Lock) Kind() Kind { return l.opts.Kind }

// Term returns the term this process won, and whether it still leads in it: the zero Term and false before
// it has acquired the lock; the term it won and false after it has lost or released it (a superseded
// leader may still be finishing a reconcile then, and must not write). To decide whether to write, use
// Fence.
func (l *Lock) Term() (Term, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.core.term, l.core.phase == leading && l.core.lossOf(l.core.termUID) == ""
}

// Lost returns a channel that is closed as soon as this process, having led, has lost the lock: when its
// watches show the loss (the lock deleted, taken over or marked for deletion, this Pod deleted, Failed or
// Succeeded, or on an out-of-service Node under TakeOverFromOutOfServiceNodes), or when a renewal or the
// release finds it. That is before the elector learns of it, which takes up to its renew deadline. It is
// never closed by a release, nor for a process that never led. Stop leader-only work when it closes:
// manageropts cancels the leader-only runnables it counts, and Become calls its WithOnLost function.
func (l *Lock) Lost() <-chan struct{} { return l.lostCh }

// noteLossLocked reports the loss of the term as soon as the watches show it, before the elector's next
// renewal finds it (reportLostLocked closes Lost's channel). Lock.mu must be held.
func (l *Lock) noteLossLocked() {
	if l.core.phase != leading || l.core.term.IsZero() || l.releasing {
		return
	}
	if reason := l.core.lossOf(l.core.termUID); reason != "" {
		l.reportLostLocked(reason)
	}
}

// Fence returns the term to stamp on a write, or an error when this process must not write: ErrNotLeading
// before it leads, ErrLockLost once it has lost the lock (it is being superseded: Lost is closed, and a
// reconcile already running must not write), ErrReleased after it released it. Call it right before each write a leader makes,
// and write nothing on an error.
func (l *Lock) Fence() (Term, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch l.core.phase {
	case leading:
		if reason := l.core.lossOf(l.core.termUID); reason != "" {
			// Seen on the watch, not yet by the elector's renewal: already superseded.
			return l.core.term, fmt.Errorf("lock %s: term %s: %w: %s", l.Describe(), l.core.term, ErrLockLost, reason)
		}
		return l.core.term, nil
	case lost:
		return l.core.term, fmt.Errorf("lock %s: term %s: %w", l.Describe(), l.core.term, ErrLockLost)
	case released:
		return l.core.term, fmt.Errorf("lock %s: term %s: %w", l.Describe(), l.core.term, ErrReleased)
	}
	return Term{}, fmt.Errorf("lock %s: %w", l.Describe(), ErrNotLeading)
}

// RecordEvent records client-go's elector events ("became leader", "stopped leading") on the lock object
// when Options.EventRecorder is set. Without it they are not recorded: the lock's own Events (BecameLeader,
// TookOver, LostLock, Released) say the same on the lock and on the Pod, and more exactly.
func (l *Lock) RecordEvent(s string) {
	if l.opts.EventRecorder == nil {
		return
	}
	l.mu.Lock()
	lease := l.core.lock
	l.mu.Unlock()
	l.opts.EventRecorder.Eventf(l.lockRef(lease), corev1.EventTypeNormal, "LeaderElection", "%s %s", l.identity, s)
}

// ReadyCheck is a readiness check (for manager.AddReadyzCheck): it fails until this candidate could take
// the lock over from a holder that stops gracefully without paying the acquisition grace. That needs the
// lock's watch synced and, while another Pod holds the lock, the watch of that Pod synced too, so that this
// candidate sees the holder's containers stop. A Deployment's rolling update counts a new replica as
// available only once it is ready, so the replica that leads next has seen its predecessor.
func (l *Lock) ReadyCheck(_ *http.Request) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.core
	switch {
	case !c.lockSynced:
		return fmt.Errorf("lock %s: the lock's watch has not synced yet", l.Describe())
	case c.holder != nil && c.holder.UID != c.self.UID && (c.pod.name != c.holder.Name || !c.pod.synced):
		return fmt.Errorf("lock %s: the watch of the holder's Pod %s has not synced yet", l.Describe(), c.holder.Name)
	}
	return nil
}

// Check is a health check (for manager.AddHealthzCheck): it fails while this process leads and its watch
// of the lock has been broken for longer than Options.WatchFailureTolerance, since such a leader cannot see
// that it lost the lock. It never fails for a follower.
func (l *Lock) Check(_ *http.Request) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.core
	if c.phase != leading || c.lockErr == nil {
		return nil
	}
	if since := time.Since(c.lockBrokenSince); since > l.opts.WatchFailureTolerance {
		return fmt.Errorf("lock %s: leading, but the lock watch has been failing for %s: %w", l.Describe(), since.Round(time.Second), c.lockErr)
	}
	return nil
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
	// When this follower found the lock free, and when it may try for it (see Options.AcquireSpread).
	var spreadFrom, spreadUntil time.Time
	for {
		l.mu.Lock()
		ch := l.changed
		a := l.core.judge()
		mayWait := l.core.phase == following
		spread := l.spread
		l.mu.Unlock()

		if mayWait && a.judged != nil && a.judged.kind != judgedOurs && spread.spread > 0 {
			if spreadUntil.IsZero() {
				spreadFrom = time.Now()
				spreadUntil = spreadFrom.Add(spread.delay(a.judged.proven))
			}
			if time.Now().Before(spreadUntil) {
				if !l.waitChange(ctx, ch, time.Until(spreadUntil)) {
					return nil, nil, l.closedErr(ctx)
				}
				continue // judge again: another candidate may have taken it
			}
		}
		confirmedAlive := false
		if a.confirm != nil {
			gone, err := l.confirmGone(ctx, *a.confirm)
			if err != nil {
				return nil, nil, err
			}
			if !gone { // the Pod watch lags the live state: the holder is alive after all
				confirmedAlive = true
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
			if !spreadUntil.IsZero() && !confirmedAlive {
				// Another candidate took the lock while this one waited: it sent nothing.
				waited := time.Since(spreadFrom)
				l.adaptSpread(func(s *spreader) { s.stoodDown(waited) })
			}
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
		l.core.judged = a.judged
		l.mu.Unlock()
		if a.record == nil {
			return nil, nil, apierrors.NewNotFound(l.store.resource(), l.name)
		}
		return a.record, rawRecord(*a.record), nil
	}
}

// adaptSpread applies one adaptation (spread.go) to this follower's spread.
func (l *Lock) adaptSpread(adapt func(*spreader)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	adapt(&l.spread)
}

// waitSynced waits until the lock watch has synced: a candidate acquires only on an established watch.
func (l *Lock) waitSynced(ctx context.Context) error {
	for {
		l.mu.Lock()
		synced, werr, ch, serr := l.core.lockSynced, l.core.lockErr, l.changed, l.socketErr
		l.mu.Unlock()
		if serr != nil {
			return fmt.Errorf("lock %s: %w", l.Describe(), serr)
		}
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
// ordered with each other, and a watch's first list may come from a lagging cache, so a takeover decision
// that does not rest on an event showing an end nothing undoes (core.toConfirm) is confirmed by one live GET.
func (l *Lock) confirmGone(ctx context.Context, h PodRef) (bool, error) {
	pod, err := l.client.CoreV1().Pods(l.namespace).Get(ctx, h.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("confirming that holder Pod %s is gone: %w", h, err)
	}
	l.mu.Lock()
	l.core.noteStopped(pod)
	l.mu.Unlock()
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
func (l *Lock) Create(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	l.start()
	j, err := l.take(judgedAbsent)
	if err != nil {
		return err
	}
	// Written unsettled even when proven: a creation's only precondition is that the lock is absent, so
	// whether the proof still held when it was stored shows only on the watch (finishAcquisition).
	sent := time.Now()
	created, err := l.store.create(ctx, withLabels(newLock(l.namespace, l.name, l.own, sent, false, stopsWithinFor(l.opts)), l.opts.Labels))
	rtt := time.Since(sent)
	if err != nil {
		if apierrors.IsAlreadyExists(err) {
			l.adaptSpread(func(s *spreader) { s.lost(rtt) }) // another candidate created it first
		}
		// A create whose reply was lost may still have been stored: the next Get then finds the lock held
		// by this Pod, and re-acquires it with the grace this acquisition would have paid (its settled mark).
		// There is no next Get if the elector is giving up.
		l.abandonUnknown(ctx)
		return fmt.Errorf("creating lock %s: %w", l.Describe(), err)
	}
	l.adaptSpread(func(s *spreader) { s.wrote(rtt) })
	return l.finishAcquisition(ctx, created, "", j, ler.LeaseDurationSeconds)
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
	if l.core.phase == leading {
		l.mu.Unlock()
		return l.renew(ctx)
	}
	l.mu.Unlock()
	j, err := l.take(judgedOurs, judgedTakeover)
	if err != nil {
		return err
	}
	if j.kind == judgedOurs {
		// Held by this Pod already: a restarted container of the holder's Pod (the socket proves the
		// previous process is gone), or a write of this process whose reply was lost. Nothing to write,
		// unless the lock states another self-fencing bound than this process would: the previous process
		// may have run another program (an image changed in place, a second container of the Pod).
		if d := stopsWithinFor(l.opts); stopsWithinOf(j.lease) != d {
			restated, err := l.store.takeOver(ctx, j.lease, restated(j.lease, d))
			if err != nil {
				l.abandonUnknown(ctx)
				return fmt.Errorf("restating the fence bound in lock %s: %w", l.Describe(), err)
			}
			return l.finishAcquisition(ctx, restated, j.lease.ResourceVersion, j, ler.LeaseDurationSeconds)
		}
		return l.finishAcquisition(ctx, j.lease, "", j, ler.LeaseDurationSeconds)
	}
	sent := time.Now()
	updated, err := l.store.takeOver(ctx, j.lease, takenOver(j.lease, l.own, sent, j.proven, stopsWithinFor(l.opts)))
	rtt := time.Since(sent)
	if err != nil {
		// Conflict and NotFound both mean the lock changed since it was judged. A lock the garbage collector
		// deleted (its holder's Pod is gone) answers an update with either, depending on the API server's
		// path (the UID precondition of a deleted object fails as a Conflict).
		l.abandonUnknown(ctx)
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			if l.seenDeleted(ctx, j.lease.ResourceVersion) {
				// Deleted while this candidate took it over: judge it again now, as Get, rather than after
				// the elector's retry period (100–220 ms with the default timings), and create it if free.
				if _, _, gerr := l.Get(ctx); apierrors.IsNotFound(gerr) {
					return l.Create(ctx, ler)
				}
			} else if apierrors.IsConflict(err) {
				l.adaptSpread(func(s *spreader) { s.lost(rtt) }) // another candidate's takeover came first
			}
		}
		return fmt.Errorf("taking over lock %s (%s): %w", l.Describe(), j.reason, err)
	}
	l.adaptSpread(func(s *spreader) { s.wrote(rtt) })
	return l.finishAcquisition(ctx, updated, j.lease.ResourceVersion, j, ler.LeaseDurationSeconds)
}

// seenDeleted waits, up to a retry period, until the lock watch has moved past version rv, and reports
// whether it shows the lock absent.
func (l *Lock) seenDeleted(ctx context.Context, rv string) bool {
	deadline := time.Now().Add(l.opts.RetryPeriod)
	for {
		l.mu.Lock()
		ch, lock := l.changed, l.core.lock
		l.mu.Unlock()
		if lock == nil || lock.ResourceVersion != rv {
			return lock == nil
		}
		if time.Until(deadline) <= 0 || !l.waitChange(ctx, ch, time.Until(deadline)) {
			return false
		}
	}
}

// take takes Get's decision for an acquisition of one of kinds, reporting the loss of a term that ends
// here (the elector acquires again only once it no longer sees the lock as ours).
func (l *Lock) take(kinds ...judgedKind) (*judgement, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	j, err := l.core.take(kinds...)
	if errors.Is(err, ErrLockLost) {
		l.reportLostLocked(err.Error())
	}
	return j, err
}

// renew is the leader's renewal: it confirms from the watch that the lock is still ours and writes nothing.
// While a watch it relies on is failing, the watched state may be stale, so it reads the lock and this Pod
// live instead; if the live read fails too, the watched state decides (no stepping down on an API hiccup).
func (l *Lock) renew(ctx context.Context) error {
	l.mu.Lock()
	if !l.core.watchBroken() {
		defer l.mu.Unlock()
		return l.renewedLocked(l.core.renew())
	}
	l.mu.Unlock()
	lock, pod, err := l.readLive(ctx)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.core.phase != leading {
		return fmt.Errorf("lock %s: %w", l.Describe(), ErrLockLost)
	}
	if err != nil {
		l.log.V(1).Info("Cannot read the lock live while a watch is failing; judging from the watch", "err", err.Error())
		return l.renewedLocked(l.core.renew())
	}
	reason := l.core.withLive(lock, pod).lossOf(l.core.termUID)
	if reason != "" {
		l.core.lose()
	}
	return l.renewedLocked(reason)
}

// renewedLocked reports a renewal's verdict: nil, or the loss. Lock.mu must be held.
func (l *Lock) renewedLocked(reason string) error {
	if reason == "" {
		return nil
	}
	l.reportLostLocked(reason)
	return fmt.Errorf("lock %s: %w: %s", l.Describe(), ErrLockLost, reason)
}

// readLive reads the lock and this Pod from the API server (nil for one that does not exist).
func (l *Lock) readLive(ctx context.Context) (*coordinationv1.Lease, *corev1.Pod, error) {
	lock, err := l.store.get(ctx, l.name)
	if err != nil {
		return nil, nil, err
	}
	pod, err := l.client.CoreV1().Pods(l.own.Namespace).Get(ctx, l.own.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		pod, err = nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	return lock, pod, nil
}

// finishAcquisition waits, after a successful write (or, re-acquiring, none), until the watch shows it and,
// unless every earlier holder is proven stopped, for the acquisition grace; the lock must still be ours at
// the end. A lock that is not settled yet (a creation, or an acquisition that paid the grace) is then
// marked settled. If ctx ends first, the lock is
// released again with the acquisition's own settled mark, so nothing is left held by a candidate that never
// led, and its successor pays the grace this candidate did not finish.
func (l *Lock) finishAcquisition(ctx context.Context, written *coordinationv1.Lease, judgedRV string, j *judgement, recordLease int) error {
	l.mu.Lock()
	grace, raised := l.core.graceFor(j, recordLease)
	l.core.startAcquisition(written, judgedRV, j, grace, time.Now())
	l.mu.Unlock()
	if raised {
		l.graceWarned.Do(func() {
			l.log.Error(nil, "The elector runs a longer lease duration than the timings this lock was made for; the acquisition grace is raised to cover any timings with that lease duration. Make the lock with the elector's timings (Options.RetryPeriod, RenewDeadline, LeaseDuration; see TimingsFor) for the exact grace",
				"electorLeaseDuration", (time.Duration(recordLease) * time.Second).String(), "lockLeaseDuration", l.opts.LeaseDuration.String(), "grace", grace.String())
		})
	}
	for {
		l.mu.Lock()
		ch, state := l.changed, l.core.acquisition(time.Now())
		cur := l.core.lock
		l.mu.Unlock()
		if state == acquisitionConfirm {
			lock, pod, err := l.readLive(ctx)
			l.mu.Lock()
			if err != nil {
				state = acquisitionWaiting // read again soon: nothing proves the lock is still ours
			} else if state = l.core.confirmAcquisition(lock, pod, time.Now()); state == acquisitionLead {
				cur = lock
			}
			l.mu.Unlock()
		}
		switch state {
		case acquisitionLost:
			l.mu.Lock()
			l.core.pending = nil
			l.mu.Unlock()
			return fmt.Errorf("lock %s: %w: lost before leading", l.Describe(), ErrNotAcquired)
		case acquisitionLead:
			if !settledOf(cur) {
				// Every earlier holder has stopped (proven, or the grace has passed). Say so on the lock,
				// so that a successor that sees this holder stop needs no grace.
				if settled, err := l.store.settle(ctx, cur); err != nil {
					l.log.V(1).Info("Could not mark the lock settled; a successor will pay the acquisition grace", "err", err.Error())
				} else {
					cur = settled
				}
			}
			l.mu.Lock()
			l.core.lead(cur)
			l.reportLeadLocked(cur, j, grace)
			l.mu.Unlock()
			return nil
		}
		l.mu.Lock()
		wake := l.core.acquisitionWake()
		l.mu.Unlock()
		wait := time.Until(wake)
		if wait <= 0 {
			wait = l.opts.RetryPeriod // a live read failed: read again soon
		}
		if !l.waitChange(ctx, ch, wait) {
			l.abandon(written)
			return l.closedErr(ctx)
		}
	}
}

// abandon releases a lock this process wrote (or found) but never led with: its context ended during the
// grace.
func (l *Lock) abandon(written *coordinationv1.Lease) {
	l.mu.Lock()
	cur, settled := l.core.abandon(written)
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.store.release(ctx, cur, l.identity, settled); err != nil {
		// It stays held by this Pod until the Pod is gone; refuse to act on it from now on.
		l.mu.Lock()
		l.core.lose()
		l.mu.Unlock()
		l.log.Error(err, "Could not release a lock acquired during shutdown; it is freed when this Pod is gone")
	}
}

// abandonUnknown is called after an acquisition's write failed. If ctx has ended (the elector is giving
// up), the write may still have been stored with its reply cut off, leaving the lock held by this live Pod
// with no process of it to lead or release it. It reads the lock live and, if this Pod holds it and this
// process never led, releases it with the version's own settled mark, as abandon does.
func (l *Lock) abandonUnknown(ctx context.Context) {
	if ctx.Err() == nil {
		return // the elector asks Get again, which finds a stored write as this Pod's and re-acquires it
	}
	rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cur, err := l.store.get(rctx, l.name)
	if err != nil {
		l.log.Error(err, "Could not read the lock after a write cut off by shutdown; if the write was stored, the lock is freed when this Pod is gone")
		return
	}
	l.mu.Lock()
	ours := cur != nil && l.core.phase == following && holderOf(cur) == l.identity
	l.mu.Unlock()
	if !ours {
		return
	}
	if err := l.store.release(rctx, cur, l.identity, settledOf(cur)); err != nil {
		l.mu.Lock()
		l.core.lose()
		l.mu.Unlock()
		l.log.Error(err, "Could not release a lock whose write was cut off by shutdown; it is freed when this Pod is gone")
		return
	}
	l.log.Info("Released a lock whose write was cut off by shutdown", "lockUID", string(cur.UID))
}

// release marks the lock free (client-go's release on cancel), but only once the leader's work has stopped
// (Options.WorkStopped); otherwise the lock stays held until this Pod is gone. It does not delete a Lease:
// a deleted lock whose holder's Pod lives looks, to a follower, exactly like a lock that vanished under a
// live leader.
func (l *Lock) release(ctx context.Context) error {
	l.mu.Lock()
	cur, err := l.core.mayRelease()
	if err != nil {
		if errors.Is(err, ErrLockLost) && l.core.phase == lost {
			l.reportLostLocked(err.Error())
		}
		l.mu.Unlock()
		return err
	}
	if l.opts.WorkStopped != nil && !l.opts.WorkStopped() {
		l.core.lose()
		l.mu.Unlock()
		l.log.Info("Not releasing the lock: leader-only work is still running; it is freed when this Pod is gone", "term", l.core.term.String())
		return fmt.Errorf("releasing lock %s: leader-only work is still running, so the lock stays held until this Pod is gone", l.Describe())
	}
	l.releasing = true
	l.mu.Unlock()
	if err := l.store.release(ctx, cur, l.identity, true); err != nil {
		l.mu.Lock()
		l.releasing = false
		l.noteLossLocked() // a loss the watch showed meanwhile
		l.mu.Unlock()
		return fmt.Errorf("releasing lock %s: %w", l.Describe(), err)
	}
	l.mu.Lock()
	l.core.phase = released
	l.mu.Unlock()
	l.log.Info("Released lock", "term", l.core.term.String())
	l.event(cur, corev1.EventTypeNormal, ReasonReleased, "%s released the lock on shutdown (term %s)", l.own.Name, l.core.term)
	l.Close()
	return nil
}
