package e2e

import (
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/lifelock/lifelock/pkg/lifelock"
	"github.com/lifelock/lifelock/test/harness"
)

var _ = Describe("Failover", func() {
	var (
		ns   string
		hist *harness.History
	)
	BeforeEach(func(ctx SpecContext) { ns, hist = newCheckedScenario(ctx) })
	lock := func(ctx SpecContext) (*coordinationv1.Lease, error) {
		return cp.Client.CoordinationV1().Leases(ns).Get(ctx, lockName, metav1.GetOptions{})
	}
	ownerUID := func(ctx SpecContext) func() string {
		return func() string {
			l, err := lock(ctx)
			if err != nil || len(l.OwnerReferences) == 0 {
				return ""
			}
			return string(l.OwnerReferences[0].UID)
		}
	}
	// leaderAndFollower starts a leader on Pod a and then a follower on Pod b.
	leaderAndFollower := func(ctx SpecContext, extra harness.CandidateOptions) (a, b *harness.Candidate, podA, podB *corev1.Pod) {
		podA, podB = newPod(ctx, ns, "a"), newPod(ctx, ns, "b")
		oa := extra
		oa.LockName, oa.Pod, oa.History = lockName, podA, hist
		a = startCandidate(ctx, oa)
		Eventually(a.Elected()).WithTimeout(10 * time.Second).Should(BeClosed())
		ob := extra
		ob.LockName, ob.Pod, ob.History = lockName, podB, hist
		b = startCandidate(ctx, ob)
		return a, b, podA, podB
	}

	It("hands over through the real garbage collector when the leader's Pod is deleted after it stopped", func(ctx SpecContext) {
		a, b, podA, podB := leaderAndFollower(ctx, harness.CandidateOptions{Manager: noRelease})
		Consistently(b.Elected()).WithTimeout(time.Second).ShouldNot(BeClosed())

		Expect(a.Stop(10 * time.Second)).To(Succeed()) // a crash: no release
		Consistently(b.Elected()).WithTimeout(2*time.Second).ShouldNot(BeClosed(), "the lock is not free while the holder's Pod lives")
		Expect(cp.DeletePodGracefully(ctx, podA)).To(Succeed())
		deleted := time.Now()
		Eventually(b.Elected()).WithTimeout(10 * time.Second).Should(BeClosed())
		measure("failover after Pod deletion (proven stopped, GC)", time.Since(deleted))
		Expect(ownerUID(ctx)()).To(Equal(string(podB.UID)))
	})

	DescribeTable("confirms a gone holder by a live GET of its Pod only where the follower's watch could be wrong",
		func(ctx SpecContext, end func(ctx SpecContext, a *harness.Candidate, podA *corev1.Pod), confirmed bool) {
			podA, podB := newPod(ctx, ns, "a"), newPod(ctx, ns, "b")
			a := startCandidate(ctx, harness.CandidateOptions{LockName: lockName, Pod: podA, History: hist, Manager: noRelease})
			Eventually(a.Elected()).WithTimeout(10 * time.Second).Should(BeClosed())
			counter := harness.NewRequestCounter()
			b := startCandidate(ctx, harness.CandidateOptions{LockName: lockName, Pod: podB, History: hist, Config: counter.Wrap(cp.Config)})
			Eventually(func() error { return b.Lock.ReadyCheck(nil) }).WithTimeout(10*time.Second).Should(Succeed(), "b watches a's Pod")
			getA := "GET /api/v1/namespaces/" + ns + "/pods/" + podA.Name
			before := counter.Snapshot()[getA]

			end(ctx, a, podA)
			Eventually(b.Elected()).WithTimeout(10 * time.Second).Should(BeClosed())
			gets := counter.Snapshot()[getA] - before
			if confirmed {
				Expect(gets).To(BeNumerically(">=", 1), "b's live GETs of a's Pod")
			} else {
				Expect(gets).To(BeZero(), "b's live GETs of a's Pod")
			}
			Expect(ownerUID(ctx)()).To(Equal(string(podB.UID)))
		},
		Entry("not after the kubelet stopped a's container for good and deleted its Pod", func(ctx SpecContext, a *harness.Candidate, podA *corev1.Pod) {
			Expect(a.Stop(10 * time.Second)).To(Succeed()) // a crash: no release
			Expect(cp.DeletePodGracefully(ctx, podA)).To(Succeed())
		}, false),
		Entry("after a's Pod was written Failed while its container runs (the phase can be written back)", func(ctx SpecContext, a *harness.Candidate, podA *corev1.Pod) {
			Expect(cp.SetPodPhase(ctx, podA, corev1.PodFailed, "Evicted")).To(Succeed())
			Eventually(a.Done()).WithTimeout(5 * time.Second).Should(BeClosed())
		}, true),
	)

	It("makes a force-deleted leader that still runs stop before the follower acts (acquisition grace)", func(ctx SpecContext) {
		a, b, podA, _ := leaderAndFollower(ctx, harness.CandidateOptions{})
		deleted := time.Now()
		Expect(cp.ForceDeletePod(ctx, podA)).To(Succeed())
		Eventually(a.Done()).WithTimeout(2 * time.Second).Should(BeClosed())
		Expect(a.Err()).To(MatchError(ContainSubstring("leader election lost")))
		Eventually(b.Elected()).WithTimeout(10 * time.Second).Should(BeClosed())
		measure("failover after force delete (grace paid)", time.Since(deleted))
		gap := gapBetween(hist, "a", "b")
		measure("force delete: gap between a stopping and b acting", gap)
		spans := hist.Find(func(s harness.Span) bool { return s.Who == "a" })
		Expect(spans).To(HaveLen(1))
		measure("force delete: to the leader's last act (self-fence)", spans[0].End-hist.At(deleted))
	})

	It("stops a leader's leader-only work when its watch shows the loss, without waiting for the elector's renew deadline", func(ctx SpecContext) {
		// The elector would learn of the loss at its next renewal (up to 2 s) and give up 20 s later.
		podA := newPod(ctx, ns, "a")
		// Alone, it needs no grace (the one derived from these timings is 24 s).
		grace := 100 * time.Millisecond
		a := startCandidate(ctx, harness.CandidateOptions{LockName: lockName, Pod: podA, History: hist,
			RetryPeriod: 2 * time.Second, RenewDeadline: 20 * time.Second, Lock: lifelock.Options{AcquisitionGrace: &grace}})
		Eventually(a.Elected()).WithTimeout(10 * time.Second).Should(BeClosed())
		Eventually(hist.Acting).WithTimeout(5 * time.Second).Should(ConsistOf("a"))

		deleted := time.Now()
		Expect(cp.Client.CoordinationV1().Leases(ns).Delete(ctx, lockName, metav1.DeleteOptions{})).To(Succeed())
		Eventually(hist.Acting).WithTimeout(3*time.Second).Should(BeEmpty(), "the leader's controller still runs after its loss")
		Eventually(a.Done()).WithTimeout(3 * time.Second).Should(BeClosed())
		Expect(a.Err()).To(MatchError(lifelock.ErrLockLost))
		Expect(a.Err()).To(MatchError(ContainSubstring("leader election lost")))
		spans := hist.Find(func(s harness.Span) bool { return s.Who == "a" })
		Expect(spans).To(HaveLen(1))
		measure("lock deleted: to the leader's last act, with a 20 s renew deadline", spans[0].End-hist.At(deleted))
	})

	It("returns from the manager at once on a loss even while leader-only work ignores its context, and states its fence bound in the lock", func(ctx SpecContext) {
		podA := newPod(ctx, ns, "a")
		grace := 100 * time.Millisecond // alone, it needs none
		a := startCandidate(ctx, harness.CandidateOptions{LockName: lockName, Pod: podA, History: hist,
			Linger: 5 * time.Second, Lock: lifelock.Options{AcquisitionGrace: &grace}})
		Eventually(a.Elected()).WithTimeout(10 * time.Second).Should(BeClosed())
		l, err := lock(ctx)
		Expect(err).NotTo(HaveOccurred())
		bound := lifelock.TimingsFor(0, 0).FenceBound
		Expect(l.Annotations).To(HaveKeyWithValue(lifelock.StopsWithinAnnotation, bound.String()+" "+ptr.Deref(l.Spec.HolderIdentity, "")))

		deleted := time.Now()
		Expect(cp.Client.CoordinationV1().Leases(ns).Delete(ctx, lockName, metav1.DeleteOptions{})).To(Succeed())
		// Its controller goes on for 5 s; the manager must not wait for it: main then exits.
		Eventually(a.Done()).WithTimeout(bound).Should(BeClosed(), "the manager waited for leader work that ignores its context")
		measure("lock deleted: to the manager's return, its controller ignoring its context", time.Since(deleted))
		Expect(a.Err()).To(MatchError(lifelock.ErrLockLost))
		Expect(hist.Acting()).To(ConsistOf("a"), "the in-process controller lingers (a process would have exited)")
	})

	// firstVersionOf returns, from a watch of the lock started before, the first version held by who.
	firstVersionOf := func(ctx SpecContext, w watch.Interface, who string) *coordinationv1.Lease {
		for {
			select {
			case ev, ok := <-w.ResultChan():
				Expect(ok).To(BeTrue(), "the lock watch ended")
				if l, isLease := ev.Object.(*coordinationv1.Lease); isLease && strings.HasPrefix(ptr.Deref(l.Spec.HolderIdentity, ""), who+"_") {
					return l
				}
			case <-time.After(10 * time.Second):
				Fail("no version of the lock held by " + who)
			case <-ctx.Done():
				Fail("the spec ended")
			}
		}
	}
	lockWatch := func(ctx SpecContext) watch.Interface {
		l, err := lock(ctx)
		Expect(err).NotTo(HaveOccurred())
		w, err := cp.Client.CoordinationV1().Leases(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + lockName, ResourceVersion: l.ResourceVersion})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(w.Stop)
		return w
	}

	It("takes over at once from a holder the kubelet evicted (containers stopped, then Failed): proven stopped, no grace", func(ctx SpecContext) {
		a, b, podA, _ := leaderAndFollower(ctx, harness.CandidateOptions{Manager: noRelease})
		w := lockWatch(ctx)
		Expect(a.Stop(10 * time.Second)).To(Succeed()) // the kubelet stops the containers first
		evicted := time.Now()
		Expect(cp.EvictByKubelet(ctx, podA)).To(Succeed())
		Eventually(b.Elected()).WithTimeout(10 * time.Second).Should(BeClosed())
		measure("takeover from a holder the kubelet evicted (proven stopped)", time.Since(evicted))
		// A proven takeover writes the settled mark with the takeover; one that pays the grace writes it
		// only once the grace has passed.
		Expect(firstVersionOf(ctx, w, "b").Annotations).To(HaveKeyWithValue(lifelock.SettledAnnotation, "true"))
	})

	It("pays the grace for a holder written Failed while its container runs (Pod GC, a third party)", func(ctx SpecContext) {
		a, b, podA, _ := leaderAndFollower(ctx, harness.CandidateOptions{})
		w := lockWatch(ctx)
		Expect(cp.SetPodPhase(ctx, podA, corev1.PodFailed, "")).To(Succeed())
		Eventually(a.Done()).WithTimeout(2 * time.Second).Should(BeClosed())
		Eventually(b.Elected()).WithTimeout(10 * time.Second).Should(BeClosed())
		Expect(firstVersionOf(ctx, w, "b").Annotations).NotTo(HaveKey(lifelock.SettledAnnotation))
	})

	It("lets a force-deleted leader overlap its successor when the grace is zero (what the grace prevents)", func(ctx SpecContext) {
		// The overlap is the point: record it apart from the history checked when the spec ends. The
		// leader's watch shows its loss within milliseconds and its controller is cancelled then, but a
		// reconcile in flight that does not check its context runs on (Linger): the grace covers that too.
		hist = harness.NewHistory()
		zero := time.Duration(0)
		a, b, podA, _ := leaderAndFollower(ctx, harness.CandidateOptions{Lock: lifelock.Options{AcquisitionGrace: &zero}, Linger: 300 * time.Millisecond})
		Expect(cp.ForceDeletePod(ctx, podA)).To(Succeed())
		Eventually(b.Elected()).WithTimeout(10 * time.Second).Should(BeClosed())
		Eventually(a.Done()).WithTimeout(2 * time.Second).Should(BeClosed())
		Eventually(hist.Acting).WithTimeout(time.Second).Should(ConsistOf("b"))
		Expect(hist.Check()).To(MatchError(ContainSubstring("overlap")))
	})

	DescribeTable("takes over without the garbage collector from a holder in a terminal phase",
		func(ctx SpecContext, phase corev1.PodPhase, reason string) {
			a, b, podA, podB := leaderAndFollower(ctx, harness.CandidateOptions{})
			before, err := lock(ctx)
			Expect(err).NotTo(HaveOccurred())

			Expect(cp.SetPodPhase(ctx, podA, phase, reason)).To(Succeed())
			changed := time.Now()
			Eventually(a.Done()).WithTimeout(2*time.Second).Should(BeClosed(), "the leader self-fences when its Pod is %s", phase)
			Expect(a.Err()).To(MatchError(ContainSubstring("leader election lost")))
			Eventually(b.Elected()).WithTimeout(10 * time.Second).Should(BeClosed())
			measure("takeover from a "+string(phase)+" holder (grace paid)", time.Since(changed))

			after, err := lock(ctx)
			Expect(err).NotTo(HaveOccurred())
			Expect(after.UID).To(Equal(before.UID), "the same lock object, taken over by Update, not re-created")
			Expect(after.OwnerReferences).To(ConsistOf(HaveField("UID", podB.UID)))
			Expect(ptr.Deref(after.Spec.LeaseTransitions, 0)).To(BeEquivalentTo(1))
			_, err = cp.Client.CoreV1().Pods(ns).Get(ctx, podA.Name, metav1.GetOptions{})
			Expect(err).NotTo(HaveOccurred(), "the holder's Pod still exists: no GC was involved")
		},
		Entry("evicted", corev1.PodFailed, "Evicted"),
		Entry("succeeded", corev1.PodSucceeded, ""),
	)

	It("does not let a new Pod with the same name inherit the lock (StatefulSet restart)", func(ctx SpecContext) {
		pod1 := newPod(ctx, ns, "s-0")
		a := startCandidate(ctx, harness.CandidateOptions{LockName: lockName, Pod: pod1, History: hist, Manager: noRelease})
		Eventually(a.Elected()).WithTimeout(10 * time.Second).Should(BeClosed())
		Expect(a.Stop(10 * time.Second)).To(Succeed())

		// The StatefulSet controller can create the new Pod only once the old object is gone.
		Expect(cp.Client.CoreV1().Pods(ns).Delete(ctx, pod1.Name, metav1.DeleteOptions{})).To(Succeed())
		_, err := cp.CreatePod(ctx, ns, "s-0", node)
		Expect(apierrors.IsAlreadyExists(err)).To(BeTrue(), "a Terminating Pod's name cannot be reused: %v", err)
		Expect(ownerUID(ctx)()).To(Equal(string(pod1.UID)))

		Expect(cp.TerminateContainers(ctx, pod1, 0)).To(Succeed())
		Expect(cp.ForceDeletePod(ctx, pod1)).To(Succeed())
		pod2 := newPod(ctx, ns, "s-0")
		Expect(pod2.UID).NotTo(Equal(pod1.UID))
		c := startCandidate(ctx, harness.CandidateOptions{LockName: lockName, Pod: pod2, History: hist})
		Expect(c.Lock.Identity()).NotTo(Equal(a.Lock.Identity()))
		Eventually(c.Elected()).WithTimeout(10 * time.Second).Should(BeClosed())
		l, err := lock(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(l.OwnerReferences).To(ConsistOf(HaveField("UID", pod2.UID)))
		Expect(ptr.Deref(l.Spec.HolderIdentity, "")).To(Equal(c.Lock.Identity()))
	})

	It("lets a restarted container of the leader's Pod re-acquire its lock without a write", func(ctx SpecContext) {
		a, b, podA, _ := leaderAndFollower(ctx, harness.CandidateOptions{Manager: noRelease})
		before, err := lock(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(a.Stop(10 * time.Second)).To(Succeed())

		a2 := startCandidate(ctx, harness.CandidateOptions{LockName: lockName, Pod: podA, History: hist, Manager: noRelease})
		Eventually(a2.Elected()).WithTimeout(10 * time.Second).Should(BeClosed())
		Expect(b.Elected()).NotTo(BeClosed())
		after, err := lock(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(after.ResourceVersion).To(Equal(before.ResourceVersion))
	})

	It("hands over on release after the old leader's controllers stopped", func(ctx SpecContext) {
		a, b, _, podB := leaderAndFollower(ctx, harness.CandidateOptions{})
		Consistently(b.Elected()).WithTimeout(time.Second).ShouldNot(BeClosed()) // b is a settled follower
		Expect(b.Lock.Holder()).To(Equal(a.Lock.Identity()))
		Expect(a.Stop(10 * time.Second)).To(Succeed())
		Eventually(b.Elected()).WithTimeout(10 * time.Second).Should(BeClosed())
		gap := gapBetween(hist, "a", "b") // b started acting after a's controller had stopped
		measure("release hand-off: gap between a stopping and b acting", gap)
		l, err := lock(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(l.OwnerReferences).To(ConsistOf(HaveField("UID", podB.UID)))
		Expect(ptr.Deref(l.Spec.LeaseTransitions, 0)).To(BeEquivalentTo(1))
	})

	DescribeTable("stops a leader within 1 s when its lock is deleted by hand, and keeps followers waiting for its Pod",
		func(ctx SpecContext, leaseDuration time.Duration) {
			a, b, podA, podB := leaderAndFollower(ctx, harness.CandidateOptions{Manager: func(mo *manager.Options) {
				if leaseDuration > 0 {
					mo.LeaseDuration = &leaseDuration
				}
			}})
			// The follower must have seen the holder: one that never did cannot tell a vanished lock from a free
			// one (it then creates the lock, paying the acquisition grace).
			Eventually(b.Lock.Holder).WithTimeout(10 * time.Second).Should(Equal(a.Lock.Identity()))
			Expect(cp.Client.CoordinationV1().Leases(ns).Delete(ctx, lockName, metav1.DeleteOptions{})).To(Succeed())
			Eventually(a.Done()).WithTimeout(time.Second).Should(BeClosed())
			Expect(a.Err()).To(MatchError(ContainSubstring("leader election lost")))
			Expect(hist.Acting()).To(BeEmpty())

			// a's Pod lives (a real container would restart); b must not take a lock that vanished under it.
			Consistently(b.Elected()).WithTimeout(3 * time.Second).ShouldNot(BeClosed())
			_, err := lock(ctx)
			Expect(apierrors.IsNotFound(err)).To(BeTrue(), "a lost lock is never re-created by its old holder: %v", err)

			Expect(cp.DeletePodGracefully(ctx, podA)).To(Succeed())
			Eventually(b.Elected()).WithTimeout(10 * time.Second).Should(BeClosed())
			Expect(ownerUID(ctx)()).To(Equal(string(podB.UID)))
		},
		Entry("with the default lease duration (the elector renews through Update)", time.Duration(0)),
		// Under a second, the elector's renewals go through Get, then Create on NotFound.
		Entry("with a sub-second lease duration (the elector renews through Get and Create)", 600*time.Millisecond),
	)
})
