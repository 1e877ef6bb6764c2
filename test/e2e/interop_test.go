package e2e

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/lifelock/lifelock/pkg/manageropts"
	"github.com/lifelock/lifelock/test/harness"
)

// A plain controller-runtime Lease candidate (lease mode, defaults 15 s / 10 s / 2 s) and a life candidate
// using the same name: a mixed rollout in either direction never has two leaders.
var _ = Describe("Interop with plain client-go lease candidates", func() {
	var (
		ns   string
		hist *harness.History
	)
	BeforeEach(func(ctx SpecContext) { ns, hist = newCheckedScenario(ctx) })

	It("a life candidate waits while a lease leader renews, and takes over only after its lease expired", func(ctx SpecContext) {
		lease := startCandidate(ctx, harness.CandidateOptions{Mode: manageropts.ModeLease, LockName: lockName, Pod: newPod(ctx, ns, "lease"), History: hist})
		Eventually(lease.Elected()).WithTimeout(20 * time.Second).Should(BeClosed())
		life := startCandidate(ctx, harness.CandidateOptions{LockName: lockName, Pod: newPod(ctx, ns, "life"), History: hist})
		Consistently(life.Elected()).WithTimeout(5 * time.Second).ShouldNot(BeClosed())

		Expect(lease.Stop(10 * time.Second)).To(Succeed()) // controller-runtime's default: no release
		stopped := time.Now()
		Eventually(life.Elected()).WithTimeout(30 * time.Second).Should(BeClosed())
		Expect(time.Since(stopped)).To(BeNumerically(">", 10*time.Second), "taken before the lease could have expired")
		Expect(hist.Acting()).To(ConsistOf("life"))
	})

	It("a lease candidate never sees a life leader's lock expire, and takes it once the leader's Pod is gone", func(ctx SpecContext) {
		lifePod := newPod(ctx, ns, "life")
		life := startCandidate(ctx, harness.CandidateOptions{LockName: lockName, Pod: lifePod, History: hist, Manager: noRelease})
		Eventually(life.Elected()).WithTimeout(10 * time.Second).Should(BeClosed())
		lease := startCandidate(ctx, harness.CandidateOptions{Mode: manageropts.ModeLease, LockName: lockName, Pod: newPod(ctx, ns, "lease"), History: hist})
		// Longer than the lease candidate's 15 s lease duration: it would have taken an ordinary lease by now.
		Consistently(lease.Elected()).WithTimeout(20 * time.Second).ShouldNot(BeClosed())

		Expect(life.Stop(10 * time.Second)).To(Succeed())
		Expect(cp.DeletePodGracefully(ctx, lifePod)).To(Succeed())
		Eventually(lease.Elected()).WithTimeout(20 * time.Second).Should(BeClosed())
	})
})
