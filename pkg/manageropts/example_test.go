package manageropts_test

import (
	"flag"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/lifelock/lifelock/pkg/manageropts"
)

// A kubebuilder main.go adopts life mode with the import, BindFlags before flag.Parse, and
// manageropts.NewManager in place of ctrl.NewManager. The manager starts its probes, webhooks and caches
// first, and its controllers once this Pod holds the lock; "leader election lost" makes Start return.
func Example() {
	var enableLeaderElection bool
	flag.BoolVar(&enableLeaderElection, "leader-elect", false, "Enable leader election for controller manager.")
	manageropts.BindFlags(flag.CommandLine) // --leader-elect-mode=life|lease, default life
	flag.Parse()

	mgr, err := manageropts.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		LeaderElection:   enableLeaderElection,
		LeaderElectionID: "example.my.domain",
	})
	if err != nil {
		os.Exit(1)
	}
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		os.Exit(1)
	}
}

// A controller fences what it writes with the term of the lock its manager holds: LockOf hands it the lock
// when it is set up, and the Reconcile asks Fence before each write (see lifelock.Term).
func ExampleLockOf() {
	mgr, err := manageropts.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{LeaderElection: true, LeaderElectionID: "example.my.domain"})
	if err != nil {
		os.Exit(1)
	}
	lock, ok := manageropts.LockOf(mgr) // not ok in lease mode: nothing to fence with
	reconcileOne := func() error {
		if !ok {
			return nil // write unfenced
		}
		term, err := lock.Fence()
		if err != nil {
			return err // not leading, or superseded: write nothing
		}
		_ = term.String() // stamp it on the object written
		return nil
	}
	_ = reconcileOne
}
