package e2e

import (
	"context"
	"os"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/lifelock/lifelock/pkg/lifelock"
	"github.com/lifelock/lifelock/test/harness"
)

var _ = Describe("Term", func() {
	var (
		ns   string
		hist *harness.History
	)
	BeforeEach(func(ctx SpecContext) { ns, hist = newCheckedScenario(ctx) })

	getLease := func(ctx context.Context) (*coordinationv1.Lease, error) {
		return cp.Client.CoordinationV1().Leases(ns).Get(ctx, lockName, metav1.GetOptions{})
	}
	// termOf is the term a Lease records: what its holder's Lock.Term must say.
	termOf := func(l *coordinationv1.Lease) lifelock.Term {
		return lifelock.Term{Number: ptr.Deref(l.Spec.LeaseTransitions, -1), LockUID: string(l.UID), Revision: l.ResourceVersion}
	}
	// leading returns c's term, which it must lead in.
	leading := func(c *harness.Candidate) lifelock.Term {
		t, ok := c.Lock.Term()
		Expect(ok).To(BeTrue(), "%s leads", c.Name)
		return t
	}
	before := func(t, u lifelock.Term) bool {
		b, err := t.Before(u)
		Expect(err).NotTo(HaveOccurred())
		return b
	}

	It("is the Lease's term number, UID and revision, and orders terms across a takeover and a re-created lock", func(ctx SpecContext) {
		podA, podB, podC := newPod(ctx, ns, "a"), newPod(ctx, ns, "b"), newPod(ctx, ns, "c")
		a := startCandidate(ctx, harness.CandidateOptions{LockName: lockName, Pod: podA, History: hist})
		Eventually(a.Elected()).WithTimeout(30 * time.Second).Should(BeClosed())
		lease, err := getLease(ctx)
		Expect(err).NotTo(HaveOccurred())
		ta := leading(a)
		Expect(ta).To(Equal(termOf(lease)))
		Expect(ta.Number).To(BeEquivalentTo(0))
		parsed, err := lifelock.ParseTerm(ta.String())
		Expect(err).NotTo(HaveOccurred())
		Expect(parsed).To(Equal(ta))

		b := startCandidate(ctx, harness.CandidateOptions{LockName: lockName, Pod: podB, History: hist, Manager: noRelease})
		Eventually(b.Lock.Holder).WithTimeout(30 * time.Second).Should(Equal(a.Lock.Identity()))
		_, ok := b.Lock.Term()
		Expect(ok).To(BeFalse(), "a follower has no term")

		// A takeover: the same lock object, the next number, a later revision.
		Expect(cp.SetPodPhase(ctx, podA, corev1.PodFailed, "Evicted")).To(Succeed())
		Eventually(b.Elected()).WithTimeout(30 * time.Second).Should(BeClosed())
		Eventually(a.Done()).WithTimeout(5 * time.Second).Should(BeClosed())
		_, ok = a.Lock.Term()
		Expect(ok).To(BeFalse(), "a lost its term")
		lease, err = getLease(ctx)
		Expect(err).NotTo(HaveOccurred())
		tb := leading(b)
		Expect(tb).To(Equal(termOf(lease)))
		Expect(tb.Number).To(Equal(ta.Number + 1))
		Expect(tb.LockUID).To(Equal(ta.LockUID))
		Expect(before(ta, tb)).To(BeTrue(), "%s is before %s", ta, tb)
		Expect(before(tb, ta)).To(BeFalse())
		Expect(before(tb, tb)).To(BeFalse())

		// b crashes and its Pod is deleted: the garbage collector deletes the lock, and c creates it again.
		Expect(b.Stop(30 * time.Second)).To(Succeed())
		Expect(cp.DeletePodGracefully(ctx, podB)).To(Succeed())
		Eventually(func() bool {
			_, err := getLease(ctx)
			return apierrors.IsNotFound(err)
		}).WithTimeout(30*time.Second).Should(BeTrue(), "the garbage collector deletes the lock")
		c := startCandidate(ctx, harness.CandidateOptions{LockName: lockName, Pod: podC, History: hist})
		Eventually(c.Elected()).WithTimeout(30 * time.Second).Should(BeClosed())
		lease, err = getLease(ctx)
		Expect(err).NotTo(HaveOccurred())
		tc := leading(c)
		Expect(tc).To(Equal(termOf(lease)))
		Expect(tc.Number).To(BeEquivalentTo(0), "a new lock object starts over")
		Expect(tc.LockUID).NotTo(Equal(tb.LockUID))
		Expect(before(tb, tc)).To(BeTrue(), "the revision still orders %s before %s", tb, tc)
		Expect(before(ta, tc)).To(BeTrue())
		Expect(before(tc, tb)).To(BeFalse())
	})

	It("refuses a superseded leader's writes (Fence) once its loss shows, and keeps its term readable", func(ctx SpecContext) {
		podA := newPod(ctx, ns, "a")
		a := startCandidate(ctx, harness.CandidateOptions{LockName: lockName, Pod: podA, History: hist})
		Eventually(a.Elected()).WithTimeout(10 * time.Second).Should(BeClosed())
		won, err := a.Lock.Fence()
		Expect(err).NotTo(HaveOccurred())

		// a's Pod is force-deleted while a runs: a is superseded. Its manager returns as soon as its watch
		// shows the loss, but leader work that ignores its context may still run: it asks Fence before writing.
		Expect(cp.ForceDeletePod(ctx, podA)).To(Succeed())
		deleted := time.Now()
		Eventually(func() error { _, err := a.Lock.Fence(); return err }).WithTimeout(2 * time.Second).WithPolling(time.Millisecond).
			Should(MatchError(lifelock.ErrLockLost))
		refused := time.Since(deleted)
		measure("Fence refuses after the leader's Pod is force-deleted", refused)
		t, leading := a.Lock.Term()
		Expect(leading).To(BeFalse())
		Expect(t).To(Equal(won), "the term a process won stays readable after it lost")
		Eventually(a.Done()).WithTimeout(5 * time.Second).Should(BeClosed())
		_, err = a.Lock.Fence()
		Expect(err).To(MatchError(lifelock.ErrLockLost))
	})

	DescribeTable("is filled in by Become with WithTerm",
		func(ctx SpecContext, kind lifelock.Kind) {
			newPod(ctx, ns, "a")
			bctx, cancel := context.WithCancel(ctx)
			DeferCleanup(cancel)
			var t lifelock.Term
			Expect(lifelock.Become(bctx, lockName,
				lifelock.WithConfig(cp.Config),
				lifelock.WithOptions(lifelock.Options{PodName: "a", PodNamespace: ns, Kind: kind}),
				lifelock.WithTerm(&t),
				lifelock.WithOnLost(func() {}))).To(Succeed())
			DeferCleanup(func(ctx SpecContext) { // Become leads until a loss: end it with one
				if kind == lifelock.KindConfigMap {
					Expect(cp.Client.CoreV1().ConfigMaps(ns).Delete(ctx, lockName, metav1.DeleteOptions{})).To(Succeed())
				} else {
					Expect(cp.Client.CoordinationV1().Leases(ns).Delete(ctx, lockName, metav1.DeleteOptions{})).To(Succeed())
				}
			})

			var uid types.UID
			var rv string
			if kind == lifelock.KindConfigMap {
				cm, err := cp.Client.CoreV1().ConfigMaps(ns).Get(ctx, lockName, metav1.GetOptions{})
				Expect(err).NotTo(HaveOccurred())
				uid, rv = cm.UID, cm.ResourceVersion
			} else {
				lease, err := getLease(ctx)
				Expect(err).NotTo(HaveOccurred())
				uid, rv = lease.UID, lease.ResourceVersion
			}
			Expect(t).To(Equal(lifelock.Term{Number: 0, LockUID: string(uid), Revision: rv}))
		},
		Entry("a Lease lock", lifelock.KindLease),
		Entry("a ConfigMap lock", lifelock.KindConfigMap),
	)

	It("runs examples/manager without POD_NAME in a Pod whose IP the kubelet publishes after it started: it waits for the IP, then leads", func(ctx SpecContext) {
		bin := buildExampleManager(ctx)
		pod := newPendingPod(ctx, ns, "a")
		// The sandbox passes no POD_NAME: the program finds its Pod by its hostname, and proves the Pod is
		// its own by a local IP among the Pod's, which is not published yet.
		proc, err := harness.StartPodProcess(pod, append(os.Environ(), "KUBECONFIG="+cp.Kubeconfig), bin,
			"--leader-elect", "--health-probe-bind-address=0", "--metrics-bind-address=0")
		Expect(err).NotTo(HaveOccurred())
		stopAtEnd(proc)
		Consistently(proc.Done()).WithTimeout(3*time.Second).ShouldNot(BeClosed(), "the process waits for its Pod's IP")
		_, err = cp.Client.CoordinationV1().Leases(ns).Get(ctx, "lifelock-example", metav1.GetOptions{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "no lock before the Pod is proven its own: %v", err)

		_, err = cp.PublishPodRunning(ctx, pod)
		Expect(err).NotTo(HaveOccurred())
		Eventually(ctx, func() ([]metav1.OwnerReference, error) {
			l, err := cp.Client.CoordinationV1().Leases(ns).Get(ctx, "lifelock-example", metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			return l.OwnerReferences, nil
		}).WithTimeout(30*time.Second).Should(ConsistOf(HaveField("UID", pod.UID)), "the lock is owned by the process's own Pod")
		Expect(proc.Done()).NotTo(BeClosed())
	})

	It("fences examples/manager: it stamps its term, overwrites an earlier term's stamp and never a later one's", func(ctx SpecContext) {
		const (
			exampleLock = "lifelock-example" // examples/manager's LeaderElectionID
			watched     = "lifelock.example/watched"
			handledBy   = "lifelock.example/handled-by"
			termStamp   = "lifelock.example/term"
		)
		bin := buildExampleManager(ctx)
		podA := newPendingPod(ctx, ns, "a")
		proc, err := cp.StartContainer(ctx, podA, append(os.Environ(), "KUBECONFIG="+cp.Kubeconfig), bin,
			"--leader-elect", "--health-probe-bind-address=0", "--metrics-bind-address=0")
		Expect(err).NotTo(HaveOccurred())
		stopAtEnd(proc)

		var lease *coordinationv1.Lease
		Eventually(func(g Gomega) {
			lease, err = cp.Client.CoordinationV1().Leases(ns).Get(ctx, exampleLock, metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(lease.OwnerReferences).To(ConsistOf(HaveField("UID", podA.UID)))
			// The term is the version the acquisition's last write stored: marking the lock settled.
			g.Expect(lease.Annotations).To(HaveKeyWithValue(lifelock.SettledAnnotation, "true"))
		}).WithTimeout(60 * time.Second).Should(Succeed())
		mine := termOf(lease)

		cms := cp.Client.CoreV1().ConfigMaps(ns)
		_, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "fenced", Labels: map[string]string{watched: "true"}}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		annotations := func() (map[string]string, error) {
			cm, err := cms.Get(ctx, "fenced", metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			return cm.Annotations, nil
		}
		Eventually(annotations).WithTimeout(30 * time.Second).Should(SatisfyAll(
			HaveKeyWithValue(handledBy, "a"),
			HaveKeyWithValue(termStamp, mine.String()),
		))

		stamp := func(by string, t lifelock.Term) {
			patch := `{"metadata":{"annotations":{"` + handledBy + `":"` + by + `","` + termStamp + `":"` + t.String() + `"}}}`
			_, err := cms.Patch(ctx, "fenced", types.MergePatchType, []byte(patch), metav1.PatchOptions{})
			Expect(err).NotTo(HaveOccurred())
		}
		// A stamp of an earlier term (a previous leader's late write) is overwritten.
		earlier := lifelock.Term{Number: 0, LockUID: mine.LockUID, Revision: "1"}
		Expect(before(earlier, mine)).To(BeTrue())
		stamp("earlier-leader", earlier)
		Eventually(annotations).WithTimeout(30 * time.Second).Should(SatisfyAll(
			HaveKeyWithValue(handledBy, "a"),
			HaveKeyWithValue(termStamp, mine.String()),
		))

		// A stamp of a later term is what a superseded leader sees: it must not write over it. The later
		// term's revision is that of a write made after a's acquisition.
		probe, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "a-later-write"}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		later := lifelock.Term{Number: mine.Number + 1, LockUID: mine.LockUID, Revision: probe.ResourceVersion}
		Expect(before(mine, later)).To(BeTrue())
		stamp("later-leader", later)
		Consistently(annotations).WithTimeout(5 * time.Second).Should(SatisfyAll(
			HaveKeyWithValue(handledBy, "later-leader"),
			HaveKeyWithValue(termStamp, later.String()),
		))
		Expect(proc.Done()).NotTo(BeClosed(), "the manager still runs: it refused the write, it did not crash")

		// And its controller is still at work, so the window above was not quiet for lack of reconciling: an
		// earlier term's stamp is overwritten again.
		stamp("earlier-leader", earlier)
		Eventually(annotations).WithTimeout(30 * time.Second).Should(SatisfyAll(
			HaveKeyWithValue(handledBy, "a"),
			HaveKeyWithValue(termStamp, mine.String()),
		))
	})
})

// stopAtEnd stops proc when the spec ends, and reports its output if the spec failed.
func stopAtEnd(proc *harness.Process) {
	DeferCleanup(func() {
		_ = proc.Stop(10 * time.Second)
		if CurrentSpecReport().Failed() {
			AddReportEntry("examples/manager output", proc.Output())
		}
	})
}
