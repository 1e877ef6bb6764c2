// Package manageropts wires lifelock into a controller-runtime manager: three flags and one call that turns
// a manager.Options into a life-mode one.
//
// In a kubebuilder main.go, adoption is three lines: the import, binding the flags before flag.Parse, and
// calling manageropts.NewManager where ctrl.NewManager was called:
//
//	manageropts.BindFlags(flag.CommandLine)
//	flag.Parse()
//	...
//	mgr, err := manageropts.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{ /* unchanged */ })
//
// The flags:
//
//   - --leader-elect-mode=life|lease (Options.Mode): life, the default, elects with a lifelock.Lock; lease is
//     controller-runtime's own Lease election, unchanged.
//   - --leader-elect-lock-kind=lease|configmap (Options.Lock.Kind), life mode only: the object that holds the
//     lock. lease, the default, is a Lease. configmap is operator-lib's leader.Become format, so operator-lib
//     and lifelock replicas using the same lock name exclude each other during a migration.
//   - --leader-elect-take-over-from-out-of-service-nodes (Options.Lock.TakeOverFromOutOfServiceNodes), life
//     mode only, off by default: treat a holder whose Node is tainted node.kubernetes.io/out-of-service as
//     gone. It needs get, list and watch on nodes (a ClusterRole).
//
// --leader-elect-lock-kind=configmap with --leader-elect-mode=lease is an error. In life mode, NewManager also
// adds the lock's health check "leader-lock" to the manager's liveness checks (it fails only for a leader
// whose lock watch has been broken for longer than Options.Lock.WatchFailureTolerance, never for a
// follower), releases the lock on shutdown only once every leader-only runnable added to the manager has
// returned (controller-runtime cancels the elector after GracefulShutdownTimeout whether or not they have;
// the lock then stays held until the Pod is gone), and LockOf(mgr) hands a controller the lock, whose Fence
// returns the term this process leads in, to stamp on what it writes (see lifelock.Term). A program that calls Apply and manager.New itself passes the
// manager to Wrap for the same.
//
// With --leader-elect-mode=life (the default) and LeaderElection set, the manager elects its leader with a
// lifelock.Lock named LeaderElectionID; with --leader-elect-mode=lease it behaves exactly as
// controller-runtime does. Without LeaderElection (kubebuilder's default for a local `make run`) there is no
// election, as in controller-runtime; but --leader-elect-mode=life given explicitly without LeaderElection
// is an error, because the caller asked for exclusion and would silently get none.
//
// Life mode needs the process's own Pod. In a Pod it is found from POD_NAME/POD_NAMESPACE, else from the
// service-account namespace and the hostname, checked against the Pod object. Outside a cluster (a laptop
// with --leader-elect), NewManager returns lifelock.ErrNotInCluster, saying to run the one local process
// without leader election. (controller-runtime's lease mode fails there too, unless
// LeaderElectionNamespace is set.)
package manageropts

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/lifelock/lifelock/pkg/lifelock"
)

// Mode selects how the manager elects its leader.
type Mode string

const (
	// ModeLife is leader for life: a lock owned by the leader's Pod, freed only when that Pod is gone.
	ModeLife Mode = "life"
	// ModeLease is controller-runtime's own Lease election, unchanged.
	ModeLease Mode = "lease"
)

// FlagName is the name of the mode flag.
const FlagName = "leader-elect-mode"

// KindFlagName is the name of the flag that picks the lock's kind in life mode (Options.Lock.Kind).
const KindFlagName = "leader-elect-lock-kind"

// OutOfServiceFlagName is the name of the flag that sets Options.Lock.TakeOverFromOutOfServiceNodes.
const OutOfServiceFlagName = "leader-elect-take-over-from-out-of-service-nodes"

// Options configures life mode. The zero value is life mode with lifelock's defaults.
type Options struct {
	// Mode is the election mode. Empty means ModeLife when manager.Options.LeaderElection is set and no
	// election when it is not (as in controller-runtime). An explicit ModeLife (--leader-elect-mode=life)
	// with LeaderElection unset is an error rather than a silent run without election.
	Mode Mode

	// Lock configures the lock in life mode (own Pod, acquisition grace, logger). Its Namespace defaults to
	// manager.Options.LeaderElectionNamespace, then to the Pod's namespace.
	Lock lifelock.Options

	// StartupTimeout bounds the API calls made while applying life mode (finding the own Pod, checking
	// permissions). Default: 30 s.
	StartupTimeout time.Duration

	lock *lifelock.Lock
	work *leaderWork
}

// Default is the Options bound by BindFlags and used by NewManager.
var Default = &Options{}

// BindFlags binds --leader-elect-mode to Default on a standard-library FlagSet (kubebuilder's main.go uses
// flag.CommandLine).
func BindFlags(fs *flag.FlagSet) { Default.BindFlags(fs) }

// NewManager is ctrl.NewManager with Default applied; see Options.NewManager.
func NewManager(cfg *rest.Config, mo manager.Options) (manager.Manager, error) {
	return Default.NewManager(cfg, mo)
}

// BindFlags binds --leader-elect-mode, --leader-elect-lock-kind and
// --leader-elect-take-over-from-out-of-service-nodes to o on a standard-library FlagSet.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.Var((*modeValue)(&o.Mode), FlagName, modeUsage)
	fs.Var((*kindValue)(&o.Lock.Kind), KindFlagName, kindUsage)
	fs.BoolVar(&o.Lock.TakeOverFromOutOfServiceNodes, OutOfServiceFlagName, o.Lock.TakeOverFromOutOfServiceNodes, outOfServiceUsage)
}

// AddFlags binds the flags BindFlags binds to o on a pflag FlagSet.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.Var((*modeValue)(&o.Mode), FlagName, modeUsage)
	fs.Var((*kindValue)(&o.Lock.Kind), KindFlagName, kindUsage)
	fs.BoolVar(&o.Lock.TakeOverFromOutOfServiceNodes, OutOfServiceFlagName, o.Lock.TakeOverFromOutOfServiceNodes, outOfServiceUsage)
}

const modeUsage = "How the manager elects its leader when --leader-elect is set: " +
	"'life' (the default: a lock owned by the leader's Pod, never two leaders; runs in a Pod, or with POD_NAME and POD_NAMESPACE set) " +
	"or 'lease' (controller-runtime's renewed Lease). An explicit 'life' without --leader-elect is an error."

const outOfServiceUsage = "In life mode, treat a leader whose Node is tainted node.kubernetes.io/out-of-service as gone " +
	"(the taint says the Node is shut down). Needs get, list and watch on nodes (a ClusterRole)."

const kindUsage = "In life mode, the object that holds the lock: 'lease' (the default: a coordination.k8s.io Lease) " +
	"or 'configmap' (operator-lib's leader.Become format: operator-lib and lifelock replicas using the same lock name exclude each other)."

// NewManager applies o to mo and creates the manager: Apply, manager.New, then Wrap. In life mode the
// manager registers the lock's health check ("leader-lock"), which fails only for a leader whose lock
// watch stays broken; releases the lock on shutdown only once every leader-only runnable added to it has
// returned; and, when its Start returns, closes the lock's watches (and waits for its Events to be written).
func (o *Options) NewManager(cfg *rest.Config, mo manager.Options) (manager.Manager, error) {
	mo, _, err := o.Apply(cfg, mo)
	if err != nil {
		return nil, err
	}
	mgr, err := manager.New(cfg, mo)
	if err != nil {
		if o.lock != nil {
			o.lock.Close()
		}
		return nil, err
	}
	return o.Wrap(mgr)
}

// Wrap finishes a manager created with manager.New from the options Apply returned (NewManager does all
// three): in life mode it adds the lock's health and readiness checks (lifelock.Lock.Check and
// ReadyCheck, both named leader-lock), counts the leader-only runnables added through the
// manager it returns (the lock releases on shutdown only once all have returned), and closes the lock when
// Start returns. Add every runnable through the returned manager. In lease mode, or without election, mgr
// is returned as it is.
func (o *Options) Wrap(mgr manager.Manager) (manager.Manager, error) {
	if o.lock == nil {
		return mgr, nil
	}
	if err := mgr.AddHealthzCheck("leader-lock", o.lock.Check); err != nil {
		o.lock.Close()
		return nil, fmt.Errorf("adding the leader-lock health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("leader-lock", o.lock.ReadyCheck); err != nil {
		o.lock.Close()
		return nil, fmt.Errorf("adding the leader-lock readiness check: %w", err)
	}
	o.work.track(o.lock.Lost())
	return &lifeManager{Manager: mgr, lock: o.lock, work: o.work}, nil
}

// lifeManager closes the lock's watches once Start has returned (by then the elector has finished,
// including its release on shutdown), and counts the leader-only runnables added through it, so that the
// lock is released on shutdown only once every one of them has returned.
type lifeManager struct {
	manager.Manager
	lock *lifelock.Lock
	work *leaderWork
}

// Start runs the manager and closes the lock once it has returned (by then the elector has finished,
// including its release on shutdown).
//
// When the lock is lost, Start returns at once, as controller-runtime's manager does when its own elector
// loses (it skips the graceful shutdown): the leader-only runnables have been cancelled, and the process,
// which exits on the error, stops any leader work that ignores its context, rather than waiting for the
// graceful shutdown of the other runnables. Only the lock's Events are waited for, briefly.
func (m *lifeManager) Start(ctx context.Context) error {
	returned := make(chan error, 1)
	go func() { returned <- m.Manager.Start(ctx) }()
	select {
	case err := <-returned:
		m.lock.Close()
		return err
	case <-m.lock.Lost():
		m.lock.Close()
		return fmt.Errorf("leader election lost: the lock's watches showed the loss, so the manager stopped at once: %w", lifelock.ErrLockLost)
	}
}

// Add adds r to the manager; a runnable that runs only while leading is counted while it runs.
func (m *lifeManager) Add(r manager.Runnable) error {
	return m.Manager.Add(m.work.wrap(r))
}

// Apply returns mo configured for o.Mode. Prefer NewManager; with Apply, create the manager with
// manager.New and pass it to Wrap.
//
// In lease mode, or without mo.LeaderElection, mo is returned unchanged (an explicit ModeLife without
// mo.LeaderElection is an error; see Options.Mode). In life mode it creates the lock (finding this
// process's Pod and checking its permissions, so a problem is one clear error here rather than at Start),
// sets it as LeaderElectionResourceLockInterface, and fills unset timings with lifelock's defaults
// (lifelock.TimingsFor); timings already set in mo are kept, and the acquisition grace is derived from them.
//
// It also sets LeaderElectionReleaseOnCancel, so that a leader shutting down hands the lock over at once;
// the lock releases only once every leader-only runnable added through the manager NewManager returns has
// returned (controller-runtime cancels the elector after GracefulShutdownTimeout whether or not they have),
// and otherwise stays held until this Pod is gone. A manager made with manager.New from Apply's options and
// not passed to Wrap cannot tell, so its lock never releases: its successor takes over once this Pod is
// gone. Setting LeaderElectionReleaseOnCancel to false after Apply turns the release off.
//
// It returns the lock it created (nil in lease mode or without election).
func (o *Options) Apply(cfg *rest.Config, mo manager.Options) (manager.Options, *lifelock.Lock, error) {
	mode := o.Mode
	if mode == "" {
		mode = ModeLife
	}
	switch mode {
	case ModeLease:
		if o.Lock.Kind != "" && o.Lock.Kind != lifelock.KindLease {
			return mo, nil, fmt.Errorf("--%s=%s applies to life mode only, but --%s=lease: drop --%s, or use --%s=life", KindFlagName, o.Lock.Kind, FlagName, KindFlagName, FlagName)
		}
		if o.Lock.TakeOverFromOutOfServiceNodes {
			return mo, nil, fmt.Errorf("--%s applies to life mode only, but --%s=lease: drop it, or use --%s=life", OutOfServiceFlagName, FlagName, FlagName)
		}
		return mo, nil, nil
	case ModeLife:
	default:
		return mo, nil, fmt.Errorf("--%s=%q: %w", FlagName, mode, errInvalidMode)
	}
	if !mo.LeaderElection {
		switch {
		case o.Mode == ModeLife:
			return mo, nil, errLifeWithoutElection
		case o.Lock.Kind != "" && o.Lock.Kind != lifelock.KindLease:
			return mo, nil, fmt.Errorf("--%s=%s was given but leader election is off (in a kubebuilder main.go, --leader-elect is unset), so there is no lock: add --leader-elect, or drop --%s", KindFlagName, o.Lock.Kind, KindFlagName)
		case o.Lock.TakeOverFromOutOfServiceNodes:
			return mo, nil, fmt.Errorf("--%s was given but leader election is off (in a kubebuilder main.go, --leader-elect is unset), so there is no lock: add --leader-elect, or drop --%s", OutOfServiceFlagName, OutOfServiceFlagName)
		}
		return mo, nil, nil
	}
	if mo.LeaderElectionResourceLockInterface != nil {
		return mo, nil, fmt.Errorf("life mode: manager.Options.LeaderElectionResourceLockInterface is already set; leave it unset or use --%s=lease", FlagName)
	}
	if mo.LeaderElectionID == "" {
		return mo, nil, errors.New("life mode: manager.Options.LeaderElectionID is empty; set it to the name of the lock, as for lease mode")
	}
	t := lifelock.TimingsFor(durationOr(mo.RetryPeriod, 0), durationOr(mo.RenewDeadline, 0))
	lease := durationOr(mo.LeaseDuration, t.LeaseDuration)
	mo.RetryPeriod, mo.RenewDeadline, mo.LeaseDuration = &t.RetryPeriod, &t.RenewDeadline, &lease

	lo := o.Lock
	if lo.Namespace == "" {
		lo.Namespace = mo.LeaderElectionNamespace
	}
	if lo.Labels == nil {
		lo.Labels = mo.LeaderElectionLabels
	}
	lo.RetryPeriod, lo.RenewDeadline, lo.LeaseDuration = t.RetryPeriod, t.RenewDeadline, lease
	o.work = &leaderWork{}
	lo.WorkStopped = o.work.stopped
	lo.StopsOnLost = o.work.stopsOnLost
	if lo.Logger == nil && mo.Logger.GetSink() != nil {
		l := mo.Logger.WithName("lifelock")
		lo.Logger = &l
	}
	if mo.LeaderElectionConfig != nil {
		cfg = mo.LeaderElectionConfig
	}
	timeout := o.StartupTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	lock, err := lifelock.New(ctx, cfg, mo.LeaderElectionID, lo)
	if err != nil {
		return mo, nil, fmt.Errorf("life mode (--%s=life): %w", FlagName, err)
	}
	o.lock = lock
	mo.LeaderElectionResourceLockInterface = lock
	mo.LeaderElectionReleaseOnCancel = true
	return mo, o.lock, nil
}

// LockOf returns the lock of a manager that NewManager (or Wrap) returned in life mode, for a controller
// that fences its writes (lifelock.Lock.Fence) or reads its term; ok is false for any other manager (lease
// mode, no election, or a manager that did not come from this package), whose writes are not fenced.
func LockOf(mgr manager.Manager) (lock *lifelock.Lock, ok bool) {
	if lm, isLife := mgr.(*lifeManager); isLife {
		return lm.lock, true
	}
	return nil, false
}

// Term returns the term this process won (see lifelock.Lock.Term), and whether it still leads in it; false
// in lease mode. To decide whether to write, a controller's Reconcile calls Fence instead (or the Fence of
// the lock LockOf returns).
func (o *Options) Term() (lifelock.Term, bool) {
	if o.lock == nil {
		return lifelock.Term{}, false
	}
	return o.lock.Term()
}

// Fence returns the term to stamp on a write in life mode (lifelock.Lock.Fence), or an error when this
// process must not write: it does not lead, or it has lost the lock and is being superseded. In lease mode,
// or without election, there is no term: it returns the zero Term and nil, and writes are not fenced.
func (o *Options) Fence() (lifelock.Term, error) {
	if o.lock == nil {
		return lifelock.Term{}, nil
	}
	return o.lock.Fence()
}

// HealthCheck returns the lock's health check for manager.AddHealthzCheck (NewManager adds it for you), or
// a check that always passes when no lock was created.
func (o *Options) HealthCheck() healthz.Checker {
	if o.lock == nil {
		return healthz.Ping
	}
	return o.lock.Check
}

// leaderWork counts the leader-only runnables that have not returned, for lifelock.Options.WorkStopped. A
// runnable counts from the moment it is added, not from its start: one whose goroutine the manager has
// launched but not yet run still counts.
type leaderWork struct {
	mu       sync.Mutex
	tracking bool // runnables are added through a lifeManager, so the count is complete
	pending  int  // added and not returned
	// lost is the lock's Lost channel: closing it cancels every counted runnable at once, rather than when
	// the elector learns of the loss (up to its renew deadline later).
	lost <-chan struct{}
}

// done counts one runnable as returned.
func (w *leaderWork) done() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pending--
}

// stopsOnLost reports whether the manager's leader-only work stops as soon as the lock is lost: its
// runnables are counted (added through the manager Wrap returned), for lifelock.Options.StopsOnLost.
func (w *leaderWork) stopsOnLost() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.tracking
}

func (w *leaderWork) track(lost <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.tracking, w.lost = true, lost
}

// stopped reports whether every counted runnable has returned; false when runnables are not counted.
func (w *leaderWork) stopped() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.tracking && w.pending == 0
}

// wrap returns r counted while it runs, if the manager runs it only while leading: as controller-runtime
// sorts runnables, any that is not an HTTP server, a cache, a webhook server, or a LeaderElectionRunnable
// whose NeedLeaderElection is false. Anything else is returned unchanged.
func (w *leaderWork) wrap(r manager.Runnable) manager.Runnable {
	switch v := r.(type) {
	case *manager.Server:
		if !v.NeedLeaderElection() {
			return r
		}
	case interface{ GetCache() cache.Cache }, webhook.Server:
		return r
	case manager.LeaderElectionRunnable:
		if !v.NeedLeaderElection() {
			return r
		}
	}
	w.mu.Lock()
	w.pending++
	w.mu.Unlock()
	counted := countedRunnable{inner: r, work: w}
	if wu, ok := r.(warmupRunnable); ok {
		return countedWarmupRunnable{countedRunnable: counted, warmup: wu}
	}
	return counted
}

// warmupRunnable is controller-runtime's interface of runnables (controllers) warmed up before election.
type warmupRunnable interface {
	Warmup(context.Context) error
}

// countedRunnable is a leader-only runnable counted until its Start returns. Its context is cancelled as
// soon as the lock is lost, and its Start then returns at once with an error wrapping lifelock.ErrLockLost,
// without waiting for the runnable: that error stops the manager, which then waits only for the runnables
// that are not leader-only, so the process exits even if leader work ignores its context (as
// controller-runtime's own "leader election lost" skips the graceful shutdown). The runnable stays counted
// until it has returned.
type countedRunnable struct {
	inner manager.Runnable
	work  *leaderWork
}

func (c countedRunnable) Start(ctx context.Context) error {
	c.work.mu.Lock()
	lost := c.work.lost
	c.work.mu.Unlock()
	if lost == nil {
		defer c.work.done()
		return c.inner.Start(ctx)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	returned := make(chan error, 1)
	go func() {
		defer c.work.done()
		returned <- c.inner.Start(ctx)
	}()
	lostErr := fmt.Errorf("leader election lost: the lock's watches showed the loss, so leader-only work stopped at once: %w", lifelock.ErrLockLost)
	select {
	case err := <-returned:
		select {
		case <-lost:
			if err == nil {
				err = lostErr
			}
		default:
		}
		return err
	case <-lost:
		return lostErr
	}
}

func (c countedRunnable) NeedLeaderElection() bool { return true }

// countedWarmupRunnable is a countedRunnable whose inner runnable is also warmed up.
type countedWarmupRunnable struct {
	countedRunnable
	warmup warmupRunnable
}

func (c countedWarmupRunnable) Warmup(ctx context.Context) error { return c.warmup.Warmup(ctx) }

func durationOr(d *time.Duration, def time.Duration) time.Duration {
	if d != nil {
		return *d
	}
	return def
}

var errInvalidMode = errors.New("invalid leader election mode; use life or lease")

// errLifeWithoutElection is returned for an explicit life mode with leader election off: every replica would
// act, which is what the user asked life mode to prevent.
var errLifeWithoutElection = fmt.Errorf("--%s=life was given but leader election is off "+
	"(manager.Options.LeaderElection is false; in a kubebuilder main.go, --leader-elect is unset), so every replica "+
	"would act at once: add --leader-elect, or drop --%s to run without any election", FlagName, FlagName)

// modeValue is the flag.Value (and pflag.Value) of --leader-elect-mode.
type modeValue Mode

func (m *modeValue) String() string {
	if m == nil || *m == "" {
		return string(ModeLife)
	}
	return string(*m)
}

func (m *modeValue) Set(s string) error {
	switch Mode(s) {
	case ModeLife, ModeLease:
		*m = modeValue(s)
		return nil
	}
	return fmt.Errorf("%q: %w", s, errInvalidMode)
}

func (m *modeValue) Type() string { return "life|lease" }

// kindValue is the flag.Value (and pflag.Value) of --leader-elect-lock-kind.
type kindValue lifelock.Kind

func (k *kindValue) String() string {
	if k == nil || *k == "" {
		return string(lifelock.KindLease)
	}
	return string(*k)
}

func (k *kindValue) Set(s string) error {
	switch lifelock.Kind(s) {
	case lifelock.KindLease, lifelock.KindConfigMap:
		*k = kindValue(s)
		return nil
	}
	return fmt.Errorf("%q: invalid lock kind; use %s or %s", s, lifelock.KindLease, lifelock.KindConfigMap)
}

func (k *kindValue) Type() string { return "lease|configmap" }
