package lifelock_test

import (
	"fmt"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/lifelock/lifelock/pkg/lifelock"
)

// A program without a controller-runtime manager blocks in Become until its Pod holds the lock, then does
// its work. The Pod needs POD_NAME and POD_NAMESPACE from the downward API (or runs where the hostname
// names it), and the permissions in config/rbac/role.yaml.
func ExampleBecome() {
	ctx := ctrl.SetupSignalHandler()
	if err := lifelock.Become(ctx, "my-operator-lock"); err != nil {
		fmt.Fprintln(os.Stderr, "not leading:", err)
		os.Exit(1)
	}
	// Only one Pod runs past this point at a time, until it is gone.
	fmt.Println("leading")
}
