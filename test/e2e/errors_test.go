package e2e

import (
	"os"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/lifelock/lifelock/pkg/lifelock"
	"github.com/lifelock/lifelock/pkg/manageropts"
	"github.com/lifelock/lifelock/test/harness"
)

// unsetEnv unsets the downward-API variables for one spec.
func unsetEnv(names ...string) {
	for _, n := range names {
		if v, ok := os.LookupEnv(n); ok {
			DeferCleanup(os.Setenv, n, v)
		}
		Expect(os.Unsetenv(n)).To(Succeed())
	}
}

var _ = Describe("Bad input gets one clear error", func() {
	var ns string
	BeforeEach(func(ctx SpecContext) {
		ns = newNamespace(ctx)
		unsetEnv(lifelock.PodNameEnv, lifelock.PodNamespaceEnv)
	})

	It("outside a cluster, says to run without election, or what to set in a Pod", func(ctx SpecContext) {
		_, err := lifelock.New(ctx, cp.Config, lockName, lifelock.Options{})
		Expect(err).To(MatchError(lifelock.ErrNotInCluster))
		Expect(err.Error()).To(ContainSubstring("POD_NAMESPACE"))
		Expect(err.Error()).To(ContainSubstring("without --leader-elect"))
	})

	It("with POD_NAME unset, shows the downward-API lines to add", func(ctx SpecContext) {
		_, err := lifelock.New(ctx, cp.Config, lockName, lifelock.Options{PodNamespace: ns})
		Expect(err).To(MatchError(lifelock.ErrPodNameUnknown))
		Expect(err.Error()).To(ContainSubstring("fieldPath: metadata.name"))
	})

	It("with a Pod that does not exist, names it", func(ctx SpecContext) {
		_, err := lifelock.New(ctx, cp.Config, lockName, lifelock.Options{PodName: "no-such-pod", PodNamespace: ns})
		Expect(err).To(MatchError(lifelock.ErrPodNotFound))
		Expect(err.Error()).To(ContainSubstring(ns + "/no-such-pod"))
	})

	It("with an invalid lock name, says what a valid one looks like", func(ctx SpecContext) {
		pod := newPod(ctx, ns, "a")
		_, err := lifelock.New(ctx, cp.Config, "Not_A_Name", lifelock.Options{PodName: pod.Name, PodNamespace: ns})
		Expect(err).To(MatchError(lifelock.ErrInvalidLockName))
		Expect(err.Error()).To(ContainSubstring("lower-case"))
	})

	It("through manageropts, names the flag and leaves no lock behind", func(ctx SpecContext) {
		_, err := cp.NewCandidate(harness.CandidateOptions{LockName: lockName, Pod: newPod(ctx, ns, "a"),
			Lock: lifelock.Options{AcquisitionGrace: new(-time.Second)}})
		Expect(err).To(MatchError(ContainSubstring("--leader-elect-mode=life")))
		Expect(err).To(MatchError(ContainSubstring("AcquisitionGrace")))
		leases, err := cp.Client.CoordinationV1().Leases(ns).List(ctx, listAll)
		Expect(err).NotTo(HaveOccurred())
		Expect(leases.Items).To(BeEmpty())
	})

	It("rejects an unknown --leader-elect-mode at flag parsing", func() {
		var o manageropts.Options
		fs := newFlagSet()
		o.BindFlags(fs)
		err := fs.Parse([]string{"--leader-elect-mode=forever"})
		Expect(err).To(MatchError(ContainSubstring("use life or lease")))
	})
})
