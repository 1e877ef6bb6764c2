package e2e

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	gtypes "github.com/onsi/gomega/types"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/lifelock/lifelock/pkg/lifelock"
	"github.com/lifelock/lifelock/pkg/manageropts"
	"github.com/lifelock/lifelock/test/harness"
)

// A holder whose Node is lost, or whose Pod is stuck terminating, keeps the lock: nothing proves that its
// containers stopped. These specs check that a follower says so (an Event, a gauge) without acting on it,
// and that the lock moves once the Pod object is really gone: the real pod garbage collector force-deletes
// the terminating Pods of a Node tainted out-of-service, or, with the opt-in policy, the taint alone frees it.

var _ = Describe("Stuck holder", Ordered, ContinueOnFailure, func() {
	var (
		bin string
		ns  string
		dir string
		wr  *harness.WitnessReader
	)
	BeforeAll(func(ctx SpecContext) { bin = buildExampleManager(ctx) }, NodeTimeout(5*time.Minute))
	BeforeEach(func(ctx SpecContext) {
		ns = newNamespace(ctx)
		dir, wr = newWitness()
	})

	// lostNode creates a Ready Node for one spec and deletes it when the spec ends (the pod garbage
	// collector then deletes what is left on it).
	lostNode := func(ctx context.Context, name string) string {
		Expect(cp.EnsureNode(ctx, name)).To(Succeed())
		DeferCleanup(func(ctx SpecContext) {
			Expect(cp.Client.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{})).To(Succeed())
		})
		return name
	}
	stuckEvents := func(ctx context.Context, kind, name string) func() ([]corev1.Event, error) {
		return func() ([]corev1.Event, error) {
			evs, err := cp.Events(ctx, ns, kind, name)
			var stuck []corev1.Event
			for _, e := range evs {
				if e.Reason == lifelock.ReasonHolderLooksStuck {
					stuck = append(stuck, e)
				}
			}
			return stuck, err
		}
	}
	// stuckEvent matches the one Event b records about holder a on node, saying what looks wrong and what an
	// operator can safely do.
	stuckEvent := func(podA *corev1.Pod, nodeName, what string) gtypes.GomegaMatcher {
		return And(
			HaveField("Type", corev1.EventTypeWarning),
			HaveField("Message", And(
				HavePrefix("b is waiting for "+podA.Name+"_"+string(podA.UID)),
				ContainSubstring(what),
				ContainSubstring("kubectl delete node "+nodeName),
				ContainSubstring(lifelock.OutOfServiceTaint),
				ContainSubstring("kubectl delete pod "+podA.Name+" --grace-period=0 --force"),
			)),
		)
	}
	// expectDiagnosis waits until b has recorded exactly one HolderLooksStuck Event on the lock and on its
	// Pod, and reports it on its gauge, and then checks for d that nothing moves: the lock stays a's, b does
	// not lead, and no second Event is recorded.
	expectDiagnosis := func(ctx context.Context, b *exampleManager, podA, podB *corev1.Pod, nodeName, what string, d time.Duration) {
		since := time.Now()
		match := ConsistOf(stuckEvent(podA, nodeName, what))
		Eventually(ctx, stuckEvents(ctx, "Lease", exampleLockName)).WithTimeout(30 * time.Second).Should(match)
		measure("stuck holder: HolderLooksStuck Event recorded ("+what+")", time.Since(since))
		Eventually(ctx, stuckEvents(ctx, "Pod", podB.Name)).WithTimeout(10 * time.Second).Should(match)
		Eventually(ctx, b.sample(ctx, stuckHolderMetric, exampleLockLabels)).WithTimeout(10 * time.Second).Should(BeEquivalentTo(1))
		Consistently(ctx, func(g Gomega) {
			g.Expect(exampleLeaseOwner(ctx, ns)()).To(Equal(podA.UID), "the lock stays with the stuck holder")
			g.Expect(b.sample(ctx, masterStatusMetric, exampleLockLabels)()).To(BeZero(), "b does not lead")
			g.Expect(b.sample(ctx, stuckHolderMetric, exampleLockLabels)()).To(BeEquivalentTo(1))
			g.Expect(stuckEvents(ctx, "Lease", exampleLockName)()).To(HaveLen(1), "one Event, not one per retry")
			g.Expect(stuckEvents(ctx, "Pod", podB.Name)()).To(HaveLen(1))
			g.Expect(everActed(wr)()).To(ConsistOf("a"), "a alone has acted, in one interval")
		}).WithTimeout(d).WithPolling(500 * time.Millisecond).Should(Succeed())
	}

	Context("diagnosis", func() {
		It("reports a holder on a NotReady Node, with the remedies, and leaves it the lock", func(ctx SpecContext) {
			stuck := lostNode(ctx, "stuck-node")
			_, b, podA, podB := exampleLeaderAndFollower(ctx, bin, ns, stuck, dir, wr)
			Expect(stuckEvents(ctx, "Lease", exampleLockName)()).To(BeEmpty())

			Expect(cp.SetNodeReady(ctx, stuck, false)).To(Succeed())
			expectDiagnosis(ctx, b, podA, podB, stuck, "its Node "+stuck+" has been NotReady", 10*time.Second)
		})

		It("reports a holder whose Pod is terminating past its grace period, and leaves it the lock", func(ctx SpecContext) {
			_, b, podA, podB := exampleLeaderAndFollower(ctx, bin, ns, node, dir, wr)
			// No kubelet finishes the deletion: the Pod stays Terminating, its process running.
			Expect(cp.Client.CoreV1().Pods(ns).Delete(ctx, podA.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](1)})).To(Succeed())
			// It looks stuck 10 s after its grace period ended (terminatingSlack).
			expectDiagnosis(ctx, b, podA, podB, node, "its Pod has been terminating past its grace period, on Node "+node, 5*time.Second)
		})
	})

	Context("on a Node tainted out-of-service, with the real pod garbage collector", func() {
		// podgc runs every 20 s: a window longer than that proves it left the Pod alone.
		const podGCWindow = 25 * time.Second
		outOfService := corev1.Taint{Key: lifelock.OutOfServiceTaint, Value: "nodeshutdown", Effect: corev1.TaintEffectNoExecute}

		// shutDown plays a Node shut down under its leader: the process is gone (a shut-down node runs
		// nothing), the Node is NotReady.
		shutDown := func(ctx context.Context, a *exampleManager, nodeName string) {
			a.Kill()
			Eventually(ctx, actingIn(wr)).WithTimeout(5*time.Second).Should(BeEmpty(), "a killed leader's witness goes stale")
			Expect(cp.SetNodeReady(ctx, nodeName, false)).To(Succeed())
		}
		// expectLockStays checks for podGCWindow that the lock stays with a's Pod, which still exists, and that
		// nobody acts.
		expectLockStays := func(ctx context.Context, b *exampleManager, podA *corev1.Pod, terminating bool) {
			Consistently(ctx, func(g Gomega) {
				g.Expect(exampleLeaseOwner(ctx, ns)()).To(Equal(podA.UID))
				p, err := cp.Client.CoreV1().Pods(ns).Get(ctx, podA.Name, metav1.GetOptions{})
				g.Expect(err).NotTo(HaveOccurred(), "the pod garbage collector left a's Pod")
				g.Expect(p.DeletionTimestamp != nil).To(Equal(terminating))
				g.Expect(b.sample(ctx, masterStatusMetric, exampleLockLabels)()).To(BeZero())
				g.Expect(actingIn(wr)()).To(BeEmpty())
			}).WithTimeout(podGCWindow).WithPolling(time.Second).Should(Succeed())
		}

		It("frees the lock by default only once the pod garbage collector deletes the holder's terminating Pod", func(ctx SpecContext) {
			shut := lostNode(ctx, "shutdown-node-a")
			a, b, podA, podB := exampleLeaderAndFollower(ctx, bin, ns, shut, dir, wr)
			shutDown(ctx, a, shut)
			Expect(cp.Client.CoreV1().Pods(ns).Delete(ctx, podA.Name, metav1.DeleteOptions{})).To(Succeed())
			By("a NotReady Node and a Terminating Pod: nothing proves the holder stopped")
			expectLockStays(ctx, b, podA, true)
			Expect(b.sample(ctx, stuckHolderMetric, exampleLockLabels)()).To(BeEquivalentTo(1), "b reports the stuck holder")

			By("tainting the Node out-of-service: the pod garbage collector force-deletes the Pod")
			Expect(cp.TaintNode(ctx, shut, outOfService)).To(Succeed())
			tainted := time.Now()
			Eventually(ctx, func() error {
				_, err := cp.Client.CoreV1().Pods(ns).Get(ctx, podA.Name, metav1.GetOptions{})
				return err
			}).WithTimeout(60*time.Second).WithPolling(100*time.Millisecond).Should(Satisfy(apierrors.IsNotFound), "podgc deletes a's Pod")
			measure("out-of-service taint: podgc deleted the holder's Pod", time.Since(tainted))
			Eventually(ctx, actingIn(wr)).WithTimeout(60 * time.Second).WithPolling(50 * time.Millisecond).Should(ConsistOf("b"))
			measure("out-of-service taint, default policy: b leads (podgc + takeover)", time.Since(tainted))
			Expect(exampleLeaseOwner(ctx, ns)()).To(Equal(podB.UID))
			Eventually(ctx, b.sample(ctx, masterStatusMetric, exampleLockLabels)).WithTimeout(10 * time.Second).Should(BeEquivalentTo(1))
			// podgc writes the Pod Failed before it deletes it: b may see either first.
			mb := b.scrape(ctx)
			Expect(mb).To(Or(
				HaveKeyWithValue(harness.Key(acquisitionsMetric, acquiredFor("holder_terminal")), BeEquivalentTo(1)),
				HaveKeyWithValue(harness.Key(acquisitionsMetric, acquiredFor("holder_pod_gone")), BeEquivalentTo(1)),
			))
			Expect(mb).To(HaveKeyWithValue(harness.Key(acquisitionsMetric, acquiredFor("holder_out_of_service")), BeZero()), "the default policy ignores the taint")
			Expect(mb).To(HaveKeyWithValue(harness.Key(stuckHolderMetric, exampleLockLabels), BeZero()), "a leader waits on nobody")
		})

		It("lets a follower with the opt-in policy take over on the taint alone, while a default follower waits", func(ctx SpecContext) {
			shut := lostNode(ctx, "shutdown-node-b")
			a, b, podA, _ := exampleLeaderAndFollower(ctx, bin, ns, shut, dir, wr)
			before, err := exampleLease(ctx, ns)
			Expect(err).NotTo(HaveOccurred())
			shutDown(ctx, a, shut)
			Expect(cp.TaintNode(ctx, shut, outOfService)).To(Succeed())
			By("default policy: the taint alone moves nothing, and podgc leaves a Pod that is not terminating")
			expectLockStays(ctx, b, podA, false)

			By("starting a follower with --" + manageropts.OutOfServiceFlagName)
			podC := newPendingPod(ctx, ns, "c")
			started := time.Now()
			c := startExampleManager(ctx, bin, podC, dir, "--"+manageropts.OutOfServiceFlagName)
			Eventually(ctx, actingIn(wr)).WithTimeout(60 * time.Second).WithPolling(50 * time.Millisecond).Should(ConsistOf("c"))
			measure("out-of-service taint, opt-in policy: c started and leads", time.Since(started))
			Eventually(ctx, c.sample(ctx, masterStatusMetric, exampleLockLabels)).WithTimeout(10 * time.Second).Should(BeEquivalentTo(1))
			Expect(c.sample(ctx, acquisitionsMetric, acquiredFor("holder_out_of_service"))()).To(BeEquivalentTo(1))
			after, err := exampleLease(ctx, ns)
			Expect(err).NotTo(HaveOccurred())
			Expect(after.UID).To(Equal(before.UID), "taken over by Update, not re-created")
			Expect(after.OwnerReferences).To(ConsistOf(HaveField("UID", podC.UID)))
			Expect(ptr.Deref(after.Spec.LeaseTransitions, 0)).To(BeEquivalentTo(1))
			_, err = cp.Client.CoreV1().Pods(ns).Get(ctx, podA.Name, metav1.GetOptions{})
			Expect(err).NotTo(HaveOccurred(), "a's Pod still exists: the policy, not podgc, freed the lock")
			Expect(b.sample(ctx, masterStatusMetric, exampleLockLabels)()).To(BeZero(), "the default follower still follows")
			Eventually(ctx, b.sample(ctx, stuckHolderMetric, exampleLockLabels)).WithTimeout(10*time.Second).Should(BeZero(), "c, the new holder, is not stuck")
		})
	})
})
