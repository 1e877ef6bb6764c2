package e2e

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/lifelock/lifelock/pkg/lifelock"
	"github.com/lifelock/lifelock/test/harness"
)

const lockName = "test-lock"

var _ = Describe("Election", func() {
	var (
		ns   string
		hist *harness.History
	)
	BeforeEach(func(ctx SpecContext) {
		ns = newNamespace(ctx)
		hist = harness.NewHistory()
		DeferCleanup(func() { Expect(hist.Check()).To(Succeed()) })
	})

	getLock := func(ctx SpecContext) (*coordinationv1.Lease, error) {
		return cp.Client.CoordinationV1().Leases(ns).Get(ctx, lockName, metav1.GetOptions{})
	}

	It("gives the lock to the first candidate, owned by its Pod, and blocks a second while that Pod lives", func(ctx SpecContext) {
		podA, podB := newPod(ctx, ns, "a"), newPod(ctx, ns, "b")
		a := startCandidate(ctx, harness.CandidateOptions{LockName: lockName, Pod: podA, History: hist})
		Eventually(a.Elected()).WithTimeout(10 * time.Second).Should(BeClosed())

		lease, err := getLock(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(lease.OwnerReferences).To(ConsistOf(metav1.OwnerReference{APIVersion: "v1", Kind: "Pod", Name: "a", UID: podA.UID}))
		Expect(ptr.Deref(lease.Spec.HolderIdentity, "")).To(Equal("a_" + string(podA.UID)))
		Expect(ptr.Deref(lease.Spec.LeaseDurationSeconds, 0)).To(BeEquivalentTo(lifelock.MaxLeaseDurationSeconds))
		rv := lease.ResourceVersion

		b := startCandidate(ctx, harness.CandidateOptions{LockName: lockName, Pod: podB, History: hist})
		// Longer than any lease timing client-go would use by default (15 s lease).
		Consistently(b.Elected()).WithTimeout(20 * time.Second).ShouldNot(BeClosed())
		Expect(hist.Acting()).To(ConsistOf("a"))

		lease, err = getLock(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(lease.ResourceVersion).To(Equal(rv), "the leader wrote to its lock in steady state")
		Expect(lease.OwnerReferences[0].UID).To(Equal(types.UID(podA.UID)))
	})
})
