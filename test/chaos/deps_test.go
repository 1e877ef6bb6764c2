package chaos

// The suite's dependencies, imported here so that `go mod tidy` keeps them in go.mod even while no other
// file of the suite uses one of them.
import (
	_ "github.com/onsi/ginkgo/v2"
	_ "github.com/onsi/gomega"

	_ "github.com/lifelock/lifelock/test/harness"
	_ "github.com/lifelock/lifelock/test/harness/witness"
)
