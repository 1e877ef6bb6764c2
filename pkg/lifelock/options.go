package lifelock

import (
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// Timings for client-go's LeaderElector when it drives a Lock. Get and the leader's Update are answered
// from a watch and cost no API request, so they can be short. DefaultLeaseDuration is never written (the
// lock always stores MaxLeaseDurationSeconds); it only has to exceed the renew deadline and be at least one
// second, because the elector copies it in whole seconds into the records it hands to Update.
const (
	DefaultRetryPeriod   = 100 * time.Millisecond
	DefaultRenewDeadline = 500 * time.Millisecond
	DefaultLeaseDuration = time.Second

	// DefaultExitMargin is what an acquisition grace allows, beyond the elector's own bound, for a previous
	// leader to notice its loss and for its process to stop acting.
	DefaultExitMargin = 400 * time.Millisecond

	// DefaultFenceMargin is what a fence bound (FenceBoundFor) allows, beyond one retry period, for a leader
	// whose program stops on Lock.Lost to see its loss and stop acting: a watch event's delay, or a renewal's
	// live read while a watch fails, then the cancellation of its leader work and a scheduling delay. The
	// self-fencing measured on the test control plane takes 5 to 25 ms of it (docs/design.md).
	DefaultFenceMargin = 250 * time.Millisecond

	// DefaultAcquireSpread is the default Options.AcquireSpread.
	DefaultAcquireSpread = 100 * time.Millisecond

	// DefaultWatchFailureTolerance is how long a leader's lock watch may stay broken before Check reports
	// it unhealthy.
	DefaultWatchFailureTolerance = 30 * time.Second

	// MaxLeaseDurationSeconds is the lease duration every lock stores: plain client-go lease candidates
	// using the same name never see a live holder's lock expire.
	MaxLeaseDurationSeconds = 2147483647
)

// Timings are the timings of client-go's LeaderElector that drives a Lock, and the acquisition grace that
// covers them. This is the one place they are derived; Become, package manageropts and a plain client-go
// program all take them from TimingsFor.
type Timings struct {
	RetryPeriod      time.Duration // LeaderElectionConfig.RetryPeriod
	RenewDeadline    time.Duration // LeaderElectionConfig.RenewDeadline
	LeaseDuration    time.Duration // LeaderElectionConfig.LeaseDuration: never written, only validated and copied into records
	AcquisitionGrace time.Duration // Options.AcquisitionGrace: covers a previous leader's self-fencing under these timings
	// FenceBound is how soon a leader that stops on Lock.Lost (Options.StopsOnLost) stops acting once its
	// loss is visible: what it states in StopsWithinAnnotation, and what its successors then wait instead
	// of AcquisitionGrace.
	FenceBound time.Duration
}

// TimingsFor returns the timings for an elector with these retry period and renew deadline (zero for
// lifelock's defaults): the lease duration client-go requires (above the renew deadline, and at least one
// second so that a record's whole seconds are not zero) and the acquisition grace. Every candidate of one
// lock must run the same timings: the grace one candidate waits covers the self-fencing of the others.
func TimingsFor(retryPeriod, renewDeadline time.Duration) Timings {
	if retryPeriod == 0 {
		retryPeriod = DefaultRetryPeriod
	}
	if renewDeadline == 0 {
		renewDeadline = DefaultRenewDeadline
	}
	return Timings{
		RetryPeriod:      retryPeriod,
		RenewDeadline:    renewDeadline,
		LeaseDuration:    max(DefaultLeaseDuration, 2*renewDeadline),
		AcquisitionGrace: AcquisitionGraceFor(retryPeriod, renewDeadline),
		FenceBound:       FenceBoundFor(retryPeriod),
	}
}

// FenceBoundFor returns how soon a leader whose program stops all leader work when Lock.Lost is closed
// stops acting after its loss became visible, with this retry period: the watches show the loss within the
// fence margin; while a watch fails, the next renewal (at most one retry period away) reads the lock and
// this Pod live and finds it. A leader that relies on the elector alone needs AcquisitionGraceFor instead:
// the elector learns of the loss at a renewal and then retries until its renew deadline.
func FenceBoundFor(retryPeriod time.Duration) time.Duration {
	return retryPeriod + DefaultFenceMargin
}

// AcquisitionGraceFor returns the acquisition grace that covers the self-fencing bound of a previous
// leader whose elector runs with these timings: it notices its loss on its next renewal (at most one
// retry period away), gives up after renewDeadline, and then needs a retry period of poll granularity and
// the exit margin to stop acting.
func AcquisitionGraceFor(retryPeriod, renewDeadline time.Duration) time.Duration {
	return renewDeadline + 2*retryPeriod + DefaultExitMargin
}

// DefaultAcquisitionGrace is AcquisitionGraceFor the default timings: 1.1 s.
var DefaultAcquisitionGrace = AcquisitionGraceFor(DefaultRetryPeriod, DefaultRenewDeadline)

// Options configures a Lock. The zero value is valid: every field has a documented default.
type Options struct {
	// Kind is the type of object that holds the lock: KindLease (the default) or KindConfigMap, the format
	// of operator-lib's leader.Become, which lifelock and operator-lib candidates using the same lock name
	// both respect.
	Kind Kind

	// Namespace is where the lock object lives. Default: the candidate Pod's namespace.
	Namespace string

	// PodName is the name of the Pod this process runs in. Default: $POD_NAME, else (inside a Pod) the
	// hostname, verified against the Pod object.
	PodName string

	// PodNamespace is the namespace of the Pod this process runs in. Default: $POD_NAMESPACE, else the
	// service-account namespace file.
	PodNamespace string

	// PodUID is the UID of the Pod this process runs in. Default: $POD_UID (the downward API's
	// metadata.uid). When known, the Pod found by name must have it: a process that starts after its Pod
	// was force-deleted and re-created under the same name (a StatefulSet) would otherwise take the new
	// Pod's identity and treat that Pod's lock as its own. Give it wherever the Pod spec can.
	PodUID string

	// AcquisitionGrace is how long an acquisition waits, after its write succeeded, before it reports
	// success, unless every earlier holder is proven stopped (see SettledAnnotation). It must exceed the
	// previous leader's self-fencing bound. Zero trades exactly the unproven cases (a force-deleted Pod
	// whose process still runs, a phase written Failed while a container runs) for speed.
	// Default: TimingsFor(RetryPeriod, RenewDeadline).AcquisitionGrace; and then, should the elector hand the
	// lock a record with a longer lease duration than LeaseDuration (it runs other timings than the lock was
	// told), the grace is raised to cover any timings with that lease duration, and an error is logged once.
	// With the default, a holder that stated its own bound (StopsWithinAnnotation) on a settled lock version
	// is waited for that long instead.
	AcquisitionGrace *time.Duration

	// StopsOnLost, if set, reports whether this program stops all of its leader work as soon as Lost is
	// closed, well within the fence margin (DefaultFenceMargin), whatever that work is doing; it is asked at
	// each acquisition. Package manageropts sets it (true once the manager's leader-only runnables are
	// counted: it then makes the manager return at once on a loss), and so does Become (its default
	// WithOnLost exits the process). When it reports true, the lock states its fence bound
	// (TimingsFor(RetryPeriod, RenewDeadline).FenceBound: 350 ms with the default timings) in
	// StopsWithinAnnotation, and a successor that cannot prove this Pod stopped waits that long instead of
	// the full acquisition grace (1.1 s). Leave it unset when leader work may go on after Lost is closed
	// (the elector's OnStoppedLeading is then what stops it). Default: nil (false).
	StopsOnLost func() bool

	// AcquireSpread spreads the candidates' attempts when the lock becomes free (its holder's Pod is gone,
	// or it was released). A follower that finds it free waits on its watches for a random time up to its
	// spread before it tries, and does not try at all if another candidate takes the lock meanwhile: with
	// many candidates the first attempt still comes almost at once, and those whose turn comes after they
	// have seen it succeed send nothing (without a spread, each of 100 candidates sends its write at every
	// failover, and all but one fail). Each follower's spread starts at AcquireSpread/10 and adapts, between
	// AcquireSpread/10 and 16 × AcquireSpread, so that only a few followers fire in vain at a failover
	// however many compete: a follower that lost a race doubles its spread and raises it to at least 4 round
	// trips of its refused write; one that stood down having sent nothing shrinks it by a quarter, but only
	// if the winner's write showed at least 2 of its round trips after the lock became free. A follower that
	// could not prove the previous holders stopped (so its acquisition would pay the grace) waits half its
	// spread more, so that a follower that could, if there is one, most often goes first. Zero makes every
	// follower try at once. Default: DefaultAcquireSpread.
	AcquireSpread *time.Duration

	// RetryPeriod, RenewDeadline and LeaseDuration are the timings of the elector that drives the lock
	// (LeaderElectionConfig's fields of the same names); the default acquisition grace is derived from
	// them. Become and package manageropts set them; a program that runs client-go's LeaderElector itself
	// takes all of them from TimingsFor. Defaults: TimingsFor(0, 0).
	RetryPeriod   time.Duration
	RenewDeadline time.Duration
	LeaseDuration time.Duration

	// FollowerWait bounds how long Get, asked by a candidate that is not leading, waits on the watch for the
	// lock or its holder to change before it answers "still held". Waiting there is what makes failover
	// watch-fast instead of retry-period-slow. Default: 5 s.
	FollowerWait time.Duration

	// WatchFailureTolerance is how long a leader's lock watch may stay broken before Check reports an error.
	// Default: DefaultWatchFailureTolerance.
	WatchFailureTolerance time.Duration

	// TakeOverFromOutOfServiceNodes treats a holder whose Pod is on a Node tainted OutOfServiceTaint as gone,
	// as if its Pod were deleted; a leader on such a Node stops leading. The taint is an administrator's
	// statement that the Node is shut down and its containers stopped (Kubernetes' non-graceful node
	// shutdown); the pod garbage collector force-deletes the Node's terminating Pods on it too, which frees
	// the lock without this option. Off by default: with it, the lock trusts whoever may taint Nodes. It
	// needs get, list and watch on nodes (a ClusterRole). The acquisition grace still applies.
	TakeOverFromOutOfServiceNodes bool

	// Labels are put on the lock object when a candidate creates it (a takeover keeps the labels it
	// finds), for clusters whose admission policies require labels. Package manageropts fills them from
	// manager.Options.LeaderElectionLabels. Default: none.
	Labels map[string]string

	// WorkStopped, if set, reports whether all of the leader's work has stopped. A release on cancel (the
	// elector's ReleaseOnCancel) happens only when it returns true; otherwise the lock stays held until this
	// Pod is gone, since a release lets the next candidate lead at once. Package manageropts sets it to
	// report whether every leader-only runnable of the manager has returned (controller-runtime cancels the
	// elector after its GracefulShutdownTimeout whether or not they have). Default: nil, every release goes
	// ahead: a program that sets ReleaseOnCancel must stop its leader work before it cancels the elector.
	WorkStopped func() bool

	// EventRecorder, if set, records Events on the lock object and on the candidate's Pod: BecameLeader,
	// TookOver, LostLock, Released, HolderLooksStuck (see the Reason constants), and the elector's own
	// ("became leader", "stopped leading", on the lock). Default: the lock writes its own Events (core/v1,
	// source "lifelock"; Close waits for the writes), and the elector's are not recorded. It must not call
	// back into the Lock.
	EventRecorder resourcelock.EventRecorder

	// Logger receives the lock's log lines. Default: controller-runtime's logger, named "lifelock".
	Logger *logr.Logger
}

// setDefaults returns a copy of o with every unset field filled in.
func (o Options) setDefaults() Options {
	if o.Kind == "" {
		o.Kind = KindLease
	}
	t := TimingsFor(o.RetryPeriod, o.RenewDeadline)
	o.RetryPeriod, o.RenewDeadline = t.RetryPeriod, t.RenewDeadline
	if o.LeaseDuration == 0 {
		o.LeaseDuration = t.LeaseDuration
	}
	if o.AcquisitionGrace == nil {
		g := t.AcquisitionGrace
		o.AcquisitionGrace = &g
	}
	if o.AcquireSpread == nil {
		s := DefaultAcquireSpread
		o.AcquireSpread = &s
	}
	if o.FollowerWait == 0 {
		o.FollowerWait = 5 * time.Second
	}
	if o.WatchFailureTolerance == 0 {
		o.WatchFailureTolerance = DefaultWatchFailureTolerance
	}
	if o.Logger == nil {
		l := logf.Log.WithName("lifelock")
		o.Logger = &l
	}
	return o
}

// stopsWithinFor is the self-fencing bound a lock with these (defaulted) options states in
// StopsWithinAnnotation when it writes an acquisition: its fence bound if its program stops on Lost, else
// none.
func stopsWithinFor(o Options) time.Duration {
	if o.StopsOnLost == nil || !o.StopsOnLost() {
		return 0
	}
	return FenceBoundFor(o.RetryPeriod)
}

// validate checks the options that New cannot default.
func (o Options) validate() error {
	var errs []error
	if o.Kind != "" && o.Kind != KindLease && o.Kind != KindConfigMap {
		errs = append(errs, fmt.Errorf("Kind is %q: use %q or %q", o.Kind, KindLease, KindConfigMap))
	}
	if o.AcquisitionGrace != nil && *o.AcquisitionGrace < 0 {
		errs = append(errs, fmt.Errorf("AcquisitionGrace is %s: it must be zero or positive", *o.AcquisitionGrace))
	}
	if o.AcquireSpread != nil && *o.AcquireSpread < 0 {
		errs = append(errs, fmt.Errorf("AcquireSpread is %s: it must be zero or positive", *o.AcquireSpread))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"RetryPeriod", o.RetryPeriod}, {"RenewDeadline", o.RenewDeadline}, {"LeaseDuration", o.LeaseDuration}, {"FollowerWait", o.FollowerWait}, {"WatchFailureTolerance", o.WatchFailureTolerance}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s is %s: it must be positive, or zero for the default", d.name, d.v))
		}
	}
	for k, v := range o.Labels {
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("label key %q: %v", k, msgs))
		}
		if msgs := validation.IsValidLabelValue(v); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("label %s=%q: %v", k, v, msgs))
		}
	}
	if o.Namespace != "" {
		if msgs := validation.IsDNS1123Label(o.Namespace); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("namespace %q is not a valid namespace name: %v", o.Namespace, msgs))
		}
	}
	return errors.Join(errs...)
}

// validateLockName checks that name can name a Lease.
func validateLockName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: the name is empty; pass the name of the lock object, such as \"my-operator-lock\"", ErrInvalidLockName)
	}
	if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		return fmt.Errorf("%w %q: %v; use lower-case letters, digits, '-' and '.'", ErrInvalidLockName, name, msgs)
	}
	return nil
}
