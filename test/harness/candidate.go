package harness

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/lifelock/lifelock/pkg/lifelock"
	"github.com/lifelock/lifelock/pkg/manageropts"
)

// CandidateOptions describes an in-process manager that competes for a lock.
type CandidateOptions struct {
	// Mode is manageropts' election mode. Default: life.
	Mode manageropts.Mode
	// LockName is the LeaderElectionID.
	LockName string
	// Pod is the candidate's own Pod (it plays POD_NAME / POD_NAMESPACE). Its namespace holds the lock.
	Pod *corev1.Pod
	// History records when the candidate's controller acts.
	History *History
	// Config is the candidate's connection. Default: the control plane's administrator.
	Config *rest.Config
	// Lock overrides lifelock options (PodName and PodNamespace are always taken from Pod).
	Lock lifelock.Options
	// RetryPeriod and RenewDeadline are the elector's timings, set in manager.Options before manageropts
	// derives the lease duration and the acquisition grace from them. Zero: lifelock's defaults.
	RetryPeriod, RenewDeadline time.Duration
	// Linger is how long the candidate's controller goes on acting after its context ends: a reconcile in
	// flight that does not check its context. Default: it stops at once.
	Linger time.Duration
	// Manager is applied to the manager.Options after manageropts, to change anything else (for example
	// LeaderElectionReleaseOnCancel=false, so that stopping the candidate plays a crash).
	Manager func(*manager.Options)
}

// Candidate is a running in-process manager built with manageropts.
type Candidate struct {
	Name    string
	Pod     *corev1.Pod
	Manager manager.Manager
	// Lock is the life-mode lock (nil in lease mode).
	Lock *lifelock.Lock

	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	err    error
}

// StartCandidate builds a manager for o with manageropts and starts it. Its one controller records its
// acting interval in o.History while it is leader. The manager stops when ctx ends or Stop is called.
func (cp *ControlPlane) StartCandidate(ctx context.Context, o CandidateOptions) (*Candidate, error) {
	c, err := cp.NewCandidate(o)
	if err != nil {
		return nil, err
	}
	c.Start(ctx)
	return c, nil
}

// NewCandidate builds (but does not start) the manager StartCandidate runs; it returns manageropts' error
// as is.
func (cp *ControlPlane) NewCandidate(o CandidateOptions) (*Candidate, error) {
	cfg := o.Config
	if cfg == nil {
		cfg = cp.Config
	}
	lo := o.Lock
	lo.PodName, lo.PodNamespace = o.Pod.Name, o.Pod.Namespace
	mopts := &manageropts.Options{Mode: o.Mode, Lock: lo}
	mo := manager.Options{
		LeaderElection:          true,
		LeaderElectionID:        o.LockName,
		LeaderElectionNamespace: o.Pod.Namespace,
		Metrics:                 metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:  "0",
	}
	if o.RetryPeriod != 0 {
		mo.RetryPeriod = &o.RetryPeriod
	}
	if o.RenewDeadline != 0 {
		mo.RenewDeadline = &o.RenewDeadline
	}
	mo, lock, err := mopts.Apply(rest.CopyConfig(cfg), mo)
	if err != nil {
		return nil, err
	}
	if o.Manager != nil {
		o.Manager(&mo)
	}
	mgr, err := manager.New(rest.CopyConfig(cfg), mo)
	if err != nil {
		return nil, err
	}
	if mgr, err = mopts.Wrap(mgr); err != nil {
		return nil, err
	}
	c := &Candidate{Name: o.Pod.Name, Pod: o.Pod, Manager: mgr, Lock: lock, done: make(chan struct{})}
	if err := mgr.Add(&actor{who: c.Name, history: o.History, linger: o.Linger}); err != nil {
		return nil, err
	}
	return c, nil
}

// Start runs the manager in the background.
func (c *Candidate) Start(ctx context.Context) {
	ctx, c.cancel = context.WithCancel(ctx)
	go func() {
		defer close(c.done)
		err := c.Manager.Start(ctx)
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
	}()
}

// Elected is closed once the candidate leads.
func (c *Candidate) Elected() <-chan struct{} { return c.Manager.Elected() }

// Done is closed once the manager's Start has returned.
func (c *Candidate) Done() <-chan struct{} { return c.done }

// Err is what the manager's Start returned (nil before Done).
func (c *Candidate) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Stop cancels the manager (a graceful shutdown: with life mode it releases the lock after its controllers
// stopped) and waits for Start to return, and for the lock's watches to end.
func (c *Candidate) Stop(timeout time.Duration) error {
	c.cancel()
	select {
	case <-c.done:
	case <-time.After(timeout):
		return fmt.Errorf("candidate %s did not stop within %s", c.Name, timeout)
	}
	if c.Lock != nil {
		c.Lock.Close()
	}
	if err := c.Err(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// Actor returns a leader-only runnable (the candidate's controller) that records in history when who acts.
func Actor(who string, history *History) manager.Runnable { return &actor{who: who, history: history} }

// actor is the candidate's controller: a leader-only runnable that records when it acts, and goes on
// acting for linger after its context ends.
type actor struct {
	who     string
	history *History
	linger  time.Duration
}

func (a *actor) NeedLeaderElection() bool { return true }

func (a *actor) Start(ctx context.Context) error {
	if a.history == nil {
		<-ctx.Done()
		return nil
	}
	beat, end := a.history.Begin(a.who)
	defer end()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	done := ctx.Done()
	var lingered <-chan time.Time
	for {
		select {
		case <-done:
			if a.linger <= 0 {
				return nil
			}
			done, lingered = nil, time.After(a.linger)
		case <-lingered:
			return nil
		case <-t.C:
			beat()
		}
	}
}
