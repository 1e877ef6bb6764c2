package lifelock

import (
	"context"
	"fmt"
	"os"
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
	timings [3]time.Duration // retry period, renew deadline, lease duration
	onLost  func()
	term    *Term
}

// WithConfig sets the API server connection. Default: controller-runtime's config.GetConfig (the in-cluster
// config, or $KUBECONFIG).
func WithConfig(cfg *rest.Config) BecomeOption { return func(c *becomeConfig) { c.cfg = cfg } }

// WithOptions sets the lock's options (own Pod, namespace, acquisition grace, logger).
func WithOptions(o Options) BecomeOption { return func(c *becomeConfig) { c.opts = o } }

// WithTimings sets the elector's retry period and renew deadline. The lease duration passed to client-go is
// derived (it is never written). Default: DefaultRetryPeriod, DefaultRenewDeadline. The acquisition grace
// follows them unless set in WithOptions.
func WithTimings(retryPeriod, renewDeadline time.Duration) BecomeOption {
	return func(c *becomeConfig) { c.timings[0], c.timings[1] = retryPeriod, renewDeadline }
}

// WithTerm makes Become store the term it won in *t when it returns nil: the fencing epoch to stamp on what
// the leader writes (see Term).
func WithTerm(t *Term) BecomeOption { return func(c *becomeConfig) { c.term = t } }

// WithOnLost sets what happens when this process, having become leader, loses the lock (it was deleted by
// hand, or this Pod was evicted). Default: log and exit with status 1, since the work started after Become
// returned cannot be stopped any other way.
func WithOnLost(f func()) BecomeOption { return func(c *becomeConfig) { c.onLost = f } }

// Become blocks until this Pod holds the leader-for-life lock called name, for programs without a
// controller-runtime manager. It returns nil once this process leads, or an error if ctx ends first or the
// lock cannot be made (see New for the errors). Leadership then lasts until the Pod is gone; it is never
// released on ctx's end, because the work started after Become returns may still run. If the lock is lost
// while ctx is live, the WithOnLost function runs.
func Become(ctx context.Context, name string, options ...BecomeOption) error {
	c := becomeConfig{timings: [3]time.Duration{DefaultRetryPeriod, DefaultRenewDeadline, 0}}
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
	retry, renew := c.timings[0], c.timings[1]
	lease := max(DefaultLeaseDuration, 2*renew)
	if c.opts.AcquisitionGrace == nil {
		g := AcquisitionGraceFor(retry, renew)
		c.opts.AcquisitionGrace = &g
	}
	if c.opts.RetryPeriod == 0 {
		c.opts.RetryPeriod = retry
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
	elected := make(chan struct{})
	done := make(chan struct{})
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:          lock,
		LeaseDuration: lease,
		RenewDeadline: renew,
		RetryPeriod:   retry,
		Name:          name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) { close(elected) },
			OnStoppedLeading: func() {
				select {
				case <-elected:
					if ctx.Err() == nil {
						c.onLost()
					}
				default:
				}
			},
		},
	})
	if err != nil {
		lock.Close()
		return fmt.Errorf("becoming leader of %s: %w", lock.Describe(), err)
	}
	go func() {
		defer close(done)
		defer lock.Close()
		le.Run(ctx)
	}()
	select {
	case <-elected:
		log.Info("Became leader", "lock", lock.Describe(), "identity", lock.Identity())
		if c.term != nil {
			*c.term, _ = lock.Term()
		}
		return nil
	case <-done:
		return fmt.Errorf("becoming leader of %s: %w", lock.Describe(), ctx.Err())
	}
}
