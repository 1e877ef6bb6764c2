package e2e

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	gtypes "github.com/onsi/gomega/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/lifelock/lifelock/pkg/lifelock"
	"github.com/lifelock/lifelock/test/harness"
)

var _ = Describe("Events", func() {
	var (
		ns   string
		hist *harness.History
	)
	BeforeEach(func(ctx SpecContext) { ns, hist = newCheckedScenario(ctx) })

	// events returns the Events on the object of kind named name.
	events := func(ctx context.Context, kind, name string) func() ([]corev1.Event, error) {
		return func() ([]corev1.Event, error) { return cp.Events(ctx, ns, kind, name) }
	}
	// event matches an Event of reason and type whose message contains every one of words.
	event := func(reason, eventType string, words ...string) gtypes.GomegaMatcher {
		m := []gtypes.GomegaMatcher{HaveField("Reason", reason), HaveField("Type", eventType)}
		for _, w := range words {
			m = append(m, HaveField("Message", ContainSubstring(w)))
		}
		return SatisfyAll(m...)
	}
	// about matches an Event that matches m and is about the object uid.
	about := func(uid types.UID, m gtypes.GomegaMatcher) gtypes.GomegaMatcher {
		return SatisfyAll(m, HaveField("InvolvedObject.UID", uid))
	}
	leaseUID := func(ctx context.Context) types.UID {
		l, err := cp.Client.CoordinationV1().Leases(ns).Get(ctx, lockName, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		return l.UID
	}

	It("records BecameLeader, then TookOver and LostLock when the leader's Pod fails, on the lock and on each Pod", func(ctx SpecContext) {
		podA, podB := newPod(ctx, ns, "a"), newPod(ctx, ns, "b")
		a := startCandidate(ctx, harness.CandidateOptions{LockName: lockName, Pod: podA, History: hist})
		Eventually(a.Elected()).WithTimeout(30 * time.Second).Should(BeClosed())
		lock := leaseUID(ctx)
		ta, _ := a.Lock.Term()

		Eventually(events(ctx, "Lease", lockName)).WithTimeout(30 * time.Second).Should(
			ConsistOf(about(lock, event(lifelock.ReasonBecameLeader, corev1.EventTypeNormal, "a", ta.String()))))
		Eventually(events(ctx, "Pod", "a")).WithTimeout(30 * time.Second).Should(
			ConsistOf(about(podA.UID, event(lifelock.ReasonBecameLeader, corev1.EventTypeNormal, ta.String()))))

		b := startCandidate(ctx, harness.CandidateOptions{LockName: lockName, Pod: podB, History: hist})
		Eventually(b.Lock.Holder).WithTimeout(30 * time.Second).Should(Equal(a.Lock.Identity()))
		Consistently(events(ctx, "Pod", "b")).WithTimeout(time.Second).Should(BeEmpty(), "a follower records nothing while it waits")

		Expect(cp.SetPodPhase(ctx, podA, corev1.PodFailed, "Evicted")).To(Succeed())
		Eventually(a.Done()).WithTimeout(15 * time.Second).Should(BeClosed())
		Eventually(b.Elected()).WithTimeout(30 * time.Second).Should(BeClosed())
		Expect(leaseUID(ctx)).To(Equal(lock), "a takeover keeps the lock object")
		tb, _ := b.Lock.Term()

		// b names whom it took the lock from, and why.
		tookOver := event(lifelock.ReasonTookOver, corev1.EventTypeNormal, a.Lock.Identity(), "terminal", tb.String())
		// a fences itself on whichever it sees first: its Pod Failed, or the lock held by b (b waits the
		// acquisition grace, so on an idle machine a always sees its Pod first).
		lost := SatisfyAll(event(lifelock.ReasonLostLock, corev1.EventTypeWarning, ta.String()),
			HaveField("Message", Or(ContainSubstring("this Pod is Failed"), ContainSubstring("lock held by "+b.Lock.Identity()))))
		Eventually(events(ctx, "Lease", lockName)).WithTimeout(30 * time.Second).Should(ConsistOf(
			about(lock, event(lifelock.ReasonBecameLeader, corev1.EventTypeNormal)),
			about(lock, lost),
			about(lock, tookOver),
		))
		Eventually(events(ctx, "Pod", "b")).WithTimeout(30 * time.Second).Should(
			ConsistOf(about(podB.UID, tookOver)))
		Eventually(events(ctx, "Pod", "a")).WithTimeout(30 * time.Second).Should(ConsistOf(
			about(podA.UID, event(lifelock.ReasonBecameLeader, corev1.EventTypeNormal)),
			about(podA.UID, lost),
		))
	})

	It("records Released on the lock and on the Pod by the time a graceful stop returns", func(ctx SpecContext) {
		podA := newPod(ctx, ns, "a")
		a := startCandidate(ctx, harness.CandidateOptions{LockName: lockName, Pod: podA, History: hist})
		Eventually(a.Elected()).WithTimeout(30 * time.Second).Should(BeClosed())
		lock := leaseUID(ctx)
		ta, _ := a.Lock.Term()

		Expect(a.Stop(30 * time.Second)).To(Succeed())
		// No waiting: Stop closes the lock, and Close waits for the Events to be written.
		released := event(lifelock.ReasonReleased, corev1.EventTypeNormal, "a", ta.String())
		Expect(cp.Events(ctx, ns, "Lease", lockName)).To(ContainElement(about(lock, released)))
		Expect(cp.Events(ctx, ns, "Pod", "a")).To(ContainElement(about(podA.UID, released)))
		Expect(cp.EventReasons(ctx, ns, "Pod", "a")).To(Equal([]string{lifelock.ReasonBecameLeader, lifelock.ReasonReleased}))
	})
})
