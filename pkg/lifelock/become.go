package lifelock

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
)

// BecomeOption configures Become.
type BecomeOption func(*becomeConfig)

type becomeConfig struct {
	cfg     *rest.Config
	opts    Options
	timings [2]time.Duration // retry period, renew deadline (zero: the defaults)
	onLost  func()
	term    *Term
}

// WithConfig sets the API server connection. Default: controller-runtime's config.GetConfig (the in-cluster
// config, or $KUBECONFIG).
func WithConfig(cfg *rest.Config) BecomeOption { return func(c *becomeConfig) { c.cfg = cfg } }

// WithOptions sets the lock's options (own Pod, namespace, acquisition grace, logger).
func WithOptions(o Options) BecomeOption { return func(c *becomeConfig) { c.opts = o } }

// WithTimings sets the elector's retry period and renew deadline; the lease duration and the acquisition
// grace follow (TimingsFor), unless the grace is set in WithOptions. Default: DefaultRetryPeriod,
// DefaultRenewDeadline.
func WithTimings(retryPeriod, renewDeadline time.Duration) BecomeOption {
	return func(c *becomeConfig) { c.timings[0], c.timings[1] = retryPeriod, renewDeadline }
}

// WithTerm makes Become store the term it won in *t when it returns nil: the fencing epoch to stamp on what
// the leader writes (see Term).
func WithTerm(t *Term) BecomeOption { return func(c *becomeConfig) { c.term = t } }

// WithOnLost sets what happens when this process, having become leader, loses the lock (it was deleted by
// hand, or this Pod was evicted). It runs once, as soon as the lock's watches show the loss (Lock.Lost), or
// when the elector stops leading if that comes first. Default: log and exit with status 1, since the work
// started after Become returned cannot be stopped any other way. Become states to successors that this
// process stops within the fence bound (Options.StopsOnLost): f must stop all leader work at once; if it
// cannot, pass Options.StopsOnLost returning false in WithOptions, and successors wait the full grace.
func WithOnLost(f func()) BecomeOption { return func(c *becomeConfig) { c.onLost = f } }

// Become blocks until this Pod holds the leader-for-life lock called name, for programs without a
// controller-runtime manager. It returns nil once this process leads, or an error if ctx ends first or the
// lock cannot be made (see New for the errors). Leadership then lasts until the Pod is gone: once Become
// has returned nil, ctx no longer matters, the lock is never released, and it keeps watching for the rest
// of the process, so that a loss (the lock deleted, this Pod evicted) runs the WithOnLost function.
func Become(ctx context.Context, name string, options ...BecomeOption) error {
	var c becomeConfig
	for _, o := range options {
		o(&c)
	}
	if c.cfg == nil {
		cfg, err := config.GetConfig()
		if err != nil {
			return fmt.Errorf("becoming leader of %s: no API server configuration: %w", name, err)
		}
		c.cfg = cfg
	}
	t := TimingsFor(c.timings[0], c.timings[1])
	c.opts.RetryPeriod, c.opts.RenewDeadline, c.opts.LeaseDuration = t.RetryPeriod, t.RenewDeadline, t.LeaseDuration
	if c.opts.StopsOnLost == nil {
		c.opts.StopsOnLost = func() bool { return true } // the WithOnLost function stops the leader's work
	}
	lock, err := New(ctx, c.cfg, name, c.opts)
	if err != nil {
		return err
	}
	log := *lock.opts.Logger
	if c.onLost == nil {
		c.onLost = func() {
			log.Info("Leader lock lost; exiting so that no two leaders act", "lock", lock.Describe())
			os.Exit(1)
		}
	}
	// onLost runs once, at the first of: the loss on the lock's watches (Lost), or the elector stopping.
	var lostOnce sync.Once
	onLost := c.onLost
	c.onLost = func() { lostOnce.Do(onLost) }
	// The elector outlives ctx once this process leads: only giving up before that cancels it.
	runCtx, cancelRun := context.WithCancel(context.WithoutCancel(ctx))
	var gaveUp atomic.Bool
	elected := make(chan struct{})
	done := make(chan struct{})
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:          lock,
		LeaseDuration: t.LeaseDuration,
		RenewDeadline: t.RenewDeadline,
		RetryPeriod:   t.RetryPeriod,
		Name:          name,
		Callbacks:     becomeCallbacks(lock, &gaveUp, elected, c.onLost),
	})
	if err != nil {
		cancelRun()
		lock.Close()
		return fmt.Errorf("becoming leader of %s: %w", lock.Describe(), err)
	}
	go func() {
		defer close(done)
		defer lock.Close()
		le.Run(runCtx)
	}()
	select {
	case <-elected:
		go func() { <-done; cancelRun() }() // the elector runs on, for the rest of the process
		go func() {
			select {
			case <-lock.Lost(): // before the elector learns of it (up to its renew deadline later)
				c.onLost()
			case <-done:
			}
		}()
		term, err := electedTerm(lock)
		if err != nil {
			return fmt.Errorf("becoming leader of %s: %w", lock.Describe(), err)
		}
		log.Info("Became leader", "lock", lock.Describe(), "identity", lock.Identity())
		if c.term != nil {
			*c.term = term
		}
		return nil
	case <-ctx.Done():
		gaveUp.Store(true)
		cancelRun()
		<-done
		return fmt.Errorf("becoming leader of %s: %w", lock.Describe(), ctx.Err())
	}
}

// becomeCallbacks are Become's elector callbacks: elected is closed once the elector has acquired the lock,
// and onLost runs when it stops leading after this process held a term, unless Become gave up before
// leading. Both are decided from the lock, not from the order the callbacks run in: the elector starts
// OnStartedLeading in a goroutine, so a loss right after the acquisition may run OnStoppedLeading first.
func becomeCallbacks(lock *Lock, gaveUp *atomic.Bool, elected chan<- struct{}, onLost func()) leaderelection.LeaderCallbacks {
	return leaderelection.LeaderCallbacks{
		OnStartedLeading: func(context.Context) { close(elected) },
		OnStoppedLeading: func() {
			if term, _ := lock.Term(); !term.IsZero() && !gaveUp.Load() {
				onLost()
			}
		},
	}
}

// electedTerm is the term Become returns once the elector has acquired the lock, or ErrLockLost when the
// lock was lost again before Become could return.
func electedTerm(lock *Lock) (Term, error) {
	term, leading := lock.Term()
	if !leading {
		return Term{}, fmt.Errorf("%w right after acquiring it (term %s)", ErrLockLost, term)
	}
	return term, nil
}
