package lifelock

import "k8s.io/client-go/tools/leaderelection"

// ElectionConfig returns the configuration of client-go's LeaderElector that drives this lock, for a
// program that runs the elector itself (leaderelection.RunOrDie, without controller-runtime): the lock, the
// timings it was made with (Options.RetryPeriod, RenewDeadline and LeaseDuration; TimingsFor derives
// them, and the acquisition grace with them), its name, and callbacks. ReleaseOnCancel is set, so that a
// successor leads at once after a clean shutdown: cancel the elector's context only once the leader's work
// has stopped (or set Options.WorkStopped). Such a program stops on OnStoppedLeading, which comes up to a
// renew deadline after the loss; one that also stops as soon as Lost is closed says so with
// Options.StopsOnLost, and its successors wait less.
func (l *Lock) ElectionConfig(callbacks leaderelection.LeaderCallbacks) leaderelection.LeaderElectionConfig {
	return leaderelection.LeaderElectionConfig{
		Lock:            l,
		LeaseDuration:   l.opts.LeaseDuration,
		RenewDeadline:   l.opts.RenewDeadline,
		RetryPeriod:     l.opts.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            l.name,
		Callbacks:       callbacks,
	}
}
