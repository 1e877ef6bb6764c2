package lifelock_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"k8s.io/client-go/tools/leaderelection"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/lifelock/lifelock/pkg/lifelock"
)

// A program without a controller-runtime manager blocks in Become until its Pod holds the lock, then does
// its work. The Pod needs POD_NAME and POD_NAMESPACE from the downward API (or runs where the hostname
// names it), and the permissions in config/rbac/lifelock_leader_election_role.yaml.
func ExampleBecome() {
	ctx := ctrl.SetupSignalHandler()
	if err := lifelock.Become(ctx, "my-operator-lock"); err != nil {
		fmt.Fprintln(os.Stderr, "not leading:", err)
		os.Exit(1)
	}
	// Only one Pod runs past this point at a time, until it is gone.
	fmt.Println("leading")
}

// A leader fences what it writes with its term: it stamps Term.String() on the objects it writes, and
// before it acts on an object it reads the stamp found there. A stamp from a later term means a newer
// leader has written the object: this process has been superseded and must stop, not overwrite it.
// (In a program, the term comes from Lock.Term, manageropts.Options.Term, or Become with WithTerm.)
func ExampleTerm() {
	const stampKey = "example.com/term"
	mine := lifelock.Term{Number: 1, LockUID: "6a0b4c1e-0000-4000-8000-000000000001", Revision: "99"}

	// The leader stamps what it writes.
	annotations := map[string]string{stampKey: mine.String()}
	fmt.Println("stamped:", annotations[stampKey])

	// Later a newer leader (a takeover: the next term number, a later revision) stamped the same object.
	annotations[stampKey] = lifelock.Term{Number: 2, LockUID: mine.LockUID, Revision: "100"}.String()

	// Before acting, the old leader reads the stamp and compares.
	found, err := lifelock.ParseTerm(annotations[stampKey])
	if err != nil {
		fmt.Println("malformed stamp:", err)
		return
	}
	superseded, err := mine.Before(found)
	if err != nil {
		fmt.Println("cannot compare:", err)
		return
	}
	fmt.Println("found:", found)
	fmt.Println("superseded:", superseded)
	// Output:
	// stamped: 1/6a0b4c1e-0000-4000-8000-000000000001/99
	// found: 2/6a0b4c1e-0000-4000-8000-000000000001/100
	// superseded: true
}

// A program that runs client-go's LeaderElector itself takes the elector's timings and the lock's from one
// place, TimingsFor, so that the acquisition grace covers the timings the elector really runs with. (A
// lock made with other timings than its elector's raises its grace to cover any timings with the
// elector's lease duration, and logs an error saying so.)
func ExampleTimingsFor() {
	t := lifelock.TimingsFor(0, 0) // lifelock's defaults; or the elector's retry period and renew deadline
	opts := lifelock.Options{RetryPeriod: t.RetryPeriod, RenewDeadline: t.RenewDeadline, LeaseDuration: t.LeaseDuration}
	_ = opts // lifelock.New(ctx, cfg, "my-operator-lock", opts), then leaderelection.LeaderElectionConfig{
	//   Lock: lock, LeaseDuration: t.LeaseDuration, RenewDeadline: t.RenewDeadline, RetryPeriod: t.RetryPeriod, ...}
	fmt.Println("retry", t.RetryPeriod, "renew deadline", t.RenewDeadline, "lease", t.LeaseDuration, "grace", t.AcquisitionGrace)

	// client-go's usual timings: a previous leader may take up to about 14 s to stop.
	slow := lifelock.TimingsFor(2*time.Second, 10*time.Second)
	fmt.Println("lease", slow.LeaseDuration, "grace", slow.AcquisitionGrace)
	// Output:
	// retry 100ms renew deadline 500ms lease 1s grace 1.1s
	// lease 20s grace 14.4s
}

// A program with plain client-go runs the elector itself; the lock hands it the configuration to run,
// with the timings its acquisition grace was derived for. The Pod needs what Become's needs.
func ExampleLock_ElectionConfig() {
	ctx := ctrl.SetupSignalHandler()
	lock, err := lifelock.New(ctx, ctrl.GetConfigOrDie(), "my-operator-lock", lifelock.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err) // says what is missing: the Pod's name, a permission, ...
		os.Exit(1)
	}
	defer lock.Close()
	leaderelection.RunOrDie(ctx, lock.ElectionConfig(leaderelection.LeaderCallbacks{
		OnStartedLeading: func(ctx context.Context) {
			// Lead until ctx ends; only one Pod runs here at a time.
			<-ctx.Done()
		},
		OnStoppedLeading: func() {
			// The lock was lost (or released on shutdown): stop at once.
			os.Exit(0)
		},
	}))
}
