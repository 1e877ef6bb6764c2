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
