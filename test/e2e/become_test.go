package e2e

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/lifelock/lifelock/pkg/lifelock"
)

var _ = Describe("Become", func() {
	It("returns once this Pod holds the lock, and blocks a second Pod until the first is gone", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		podA, podB := newPod(ctx, ns, "a"), newPod(ctx, ns, "b")
		become := func(ctx context.Context, pod string, lost chan<- struct{}) error {
			return lifelock.Become(ctx, lockName,
				lifelock.WithConfig(cp.Config),
				lifelock.WithOptions(lifelock.Options{PodName: pod, PodNamespace: ns}),
				lifelock.WithOnLost(func() { close(lost) }))
		}
		ctxA, stopA := context.WithCancel(ctx)
		DeferCleanup(stopA)
		lostA := make(chan struct{})
		Expect(become(ctxA, "a", lostA)).To(Succeed())

		ctxB, stopB := context.WithCancel(ctx)
		DeferCleanup(stopB)
		becameB := make(chan error, 1)
		go func() {
			defer GinkgoRecover()
			becameB <- become(ctxB, "b", make(chan struct{}))
		}()
		Consistently(becameB).WithTimeout(3 * time.Second).ShouldNot(Receive())

		// a's context ends: Become never releases, and a keeps leading until its Pod is gone.
		stopA()
		Consistently(becameB).WithTimeout(2 * time.Second).ShouldNot(Receive())
		Expect(lostA).NotTo(BeClosed(), "ending the context is not a loss")
		// kubelet deletes a's Pod: a sees its loss (its program would exit), and b leads.
		Expect(cp.DeletePodGracefully(ctx, podA)).To(Succeed())
		Eventually(lostA).WithTimeout(2 * time.Second).Should(BeClosed())
		Eventually(becameB).WithTimeout(10 * time.Second).Should(Receive(BeNil()))
		l, err := cp.Client.CoordinationV1().Leases(ns).Get(ctx, lockName, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(l.OwnerReferences).To(ConsistOf(HaveField("UID", podB.UID)))
		DeferCleanup(func(ctx SpecContext) { Expect(cp.ForceDeletePod(ctx, podB)).To(Succeed()) }) // b's elector ends with its loss
	})

	It("keeps leading and fencing itself after its context ends", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		newPod(ctx, ns, "a")
		ctxA, stopA := context.WithCancel(ctx)
		lost := make(chan struct{})
		Expect(lifelock.Become(ctxA, lockName, lifelock.WithConfig(cp.Config),
			lifelock.WithOptions(lifelock.Options{PodName: "a", PodNamespace: ns}),
			lifelock.WithOnLost(func() { close(lost) }))).To(Succeed())
		stopA()

		// A second candidate of the same Pod still cannot take the lock: a's lock did not close with its
		// context (in this process that is refused at once; another process would wait on the per-Pod socket).
		short, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		err := lifelock.Become(short, lockName, lifelock.WithConfig(cp.Config),
			lifelock.WithOptions(lifelock.Options{PodName: "a", PodNamespace: ns}), lifelock.WithOnLost(func() {}))
		Expect(err).To(MatchError(ContainSubstring("already has a Lock")), "a second candidate of the leader's Pod led")

		// And a still sees a loss.
		Expect(cp.Client.CoordinationV1().Leases(ns).Delete(ctx, lockName, metav1.DeleteOptions{})).To(Succeed())
		Eventually(lost).WithTimeout(2*time.Second).Should(BeClosed(), "a leader whose context ended no longer fences itself")
	})

	It("calls the lost function when the leader's lock is deleted", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		newPod(ctx, ns, "a")
		lost := make(chan struct{})
		Expect(lifelock.Become(ctx, lockName, lifelock.WithConfig(cp.Config),
			lifelock.WithOptions(lifelock.Options{PodName: "a", PodNamespace: ns}),
			lifelock.WithOnLost(func() { close(lost) }))).To(Succeed())
		Expect(cp.Client.CoordinationV1().Leases(ns).Delete(ctx, lockName, metav1.DeleteOptions{})).To(Succeed())
		Eventually(lost).WithTimeout(time.Second).Should(BeClosed())
	})

	It("calls the lost function as soon as the lock's watch shows the loss, without waiting for the elector", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		newPod(ctx, ns, "a")
		lost := make(chan struct{})
		// The elector alone would learn of the loss at its next renewal (up to 2 s) and give up 20 s later.
		// Alone, it needs no grace (the one derived from these timings is 24 s).
		grace := 100 * time.Millisecond
		Expect(lifelock.Become(ctx, lockName, lifelock.WithConfig(cp.Config),
			lifelock.WithOptions(lifelock.Options{PodName: "a", PodNamespace: ns, AcquisitionGrace: &grace}),
			lifelock.WithTimings(2*time.Second, 20*time.Second),
			lifelock.WithOnLost(func() { close(lost) }))).To(Succeed())
		Expect(cp.Client.CoordinationV1().Leases(ns).Delete(ctx, lockName, metav1.DeleteOptions{})).To(Succeed())
		Eventually(lost).WithTimeout(3 * time.Second).Should(BeClosed())
	})

	It("returns the context's error when it ends before this Pod leads", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		newPod(ctx, ns, "a")
		newPod(ctx, ns, "b")
		Expect(lifelock.Become(ctx, lockName, lifelock.WithConfig(cp.Config), lifelock.WithOptions(lifelock.Options{PodName: "a", PodNamespace: ns}),
			lifelock.WithOnLost(func() {}))).To(Succeed())
		DeferCleanup(func(ctx SpecContext) { // a's elector ends with its loss
			Expect(cp.Client.CoordinationV1().Leases(ns).Delete(ctx, lockName, metav1.DeleteOptions{})).To(Succeed())
		})
		short, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		err := lifelock.Become(short, lockName, lifelock.WithConfig(cp.Config), lifelock.WithOptions(lifelock.Options{PodName: "b", PodNamespace: ns}))
		Expect(err).To(MatchError(context.DeadlineExceeded))
	})
})
