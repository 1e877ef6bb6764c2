package e2e

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	gtypes "github.com/onsi/gomega/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"

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

	It("closes a lost lock without waiting for its Event writes, which may hang on the API server", func(ctx SpecContext) {
		newPod(ctx, ns, "a")
		gate := &eventGate{release: make(chan struct{})}
		DeferCleanup(gate.open)
		cfg := rest.CopyConfig(cp.Config)
		cfg.Wrap(gate.wrap)
		lock, err := lifelock.New(ctx, cfg, lockName, lifelock.Options{PodName: "a", PodNamespace: ns})
		Expect(err).NotTo(HaveOccurred())
		t := lifelock.TimingsFor(0, 0)
		elected, stopped := make(chan struct{}), make(chan struct{})
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: lock, Name: lockName, RetryPeriod: t.RetryPeriod, RenewDeadline: t.RenewDeadline, LeaseDuration: t.LeaseDuration,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(context.Context) { close(elected) },
				OnStoppedLeading: func() { close(stopped) },
			},
		})
		Expect(err).NotTo(HaveOccurred())
		runCtx, cancel := context.WithCancel(ctx)
		DeferCleanup(cancel)
		go le.Run(runCtx)
		Eventually(elected).WithTimeout(30 * time.Second).Should(BeClosed())
		Eventually(func() ([]string, error) { return cp.EventReasons(ctx, ns, "Pod", "a") }).WithTimeout(30 * time.Second).
			Should(ContainElement(lifelock.ReasonBecameLeader))

		By("hanging every Event write, then deleting the lock: the leader loses it")
		gate.block()
		Expect(cp.Client.CoordinationV1().Leases(ns).Delete(ctx, lockName, metav1.DeleteOptions{})).To(Succeed())
		Eventually(stopped).WithTimeout(30 * time.Second).Should(BeClosed())
		Eventually(gate.waiting).WithTimeout(10*time.Second).Should(BeNumerically(">", 0), "a LostLock Event write is in flight")

		closed := make(chan struct{})
		go func() { lock.Close(); close(closed) }()
		Eventually(closed).WithTimeout(2*time.Second).Should(BeClosed(), "Close of a lost lock waited on Event writes")
		Expect(gate.waiting()).To(BeNumerically(">", 0), "the Event writes were still hanging when Close returned")
	})
})

// eventGate holds every Event write of the connections it wraps while it is blocked, until it opens or the
// request's context ends: an API server that does not answer them.
type eventGate struct {
	mu      sync.Mutex
	blocked bool
	n       int
	release chan struct{}
	once    sync.Once
}

func (g *eventGate) block() { g.mu.Lock(); g.blocked = true; g.mu.Unlock() }

func (g *eventGate) open() { g.once.Do(func() { close(g.release) }) }

// waiting is how many Event writes are held now.
func (g *eventGate) waiting() int { g.mu.Lock(); defer g.mu.Unlock(); return g.n }

func (g *eventGate) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		g.mu.Lock()
		hold := g.blocked && r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/events")
		if hold {
			g.n++
		}
		g.mu.Unlock()
		if hold {
			defer func() { g.mu.Lock(); g.n--; g.mu.Unlock() }()
			select {
			case <-g.release:
			case <-r.Context().Done():
				return nil, r.Context().Err()
			}
		}
		return rt.RoundTrip(r)
	})
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
