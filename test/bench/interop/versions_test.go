package interop

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/types"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/lifelock/lifelock/pkg/lifelock"
	"github.com/lifelock/lifelock/test/harness"
	"github.com/lifelock/lifelock/test/harness/witness"
)

// previousVersion is the older lifelock whose lock format the rolling-upgrade spec runs beside this one's:
// the last commit before the fence bound (d57938a, lifelock.dev/stops-within). It writes
// lifelock.dev/settled but states no bound, so a successor of one of its holders that cannot prove it
// stopped waits the full acquisition grace, and its takeovers keep the annotations it does not know, a
// stops-within among them. Its candidate program (test/bench/candidate, then in its own module) takes the
// same flags and records the same witness lines as today's.
const previousVersion = "50779d4bc2f2c8fcffcc7a93968b0ef475709647"

// versionLock is the Lease both versions hold in the upgrade spec (the default kind, as manageropts uses).
const versionLock = "versions-lock"

var previous struct {
	once sync.Once
	bin  string
	err  error
}

// previousCandidate builds the candidate program of previousVersion once per run, from this clone's history.
func previousCandidate(ctx context.Context) string {
	previous.once.Do(func() {
		start := time.Now()
		previous.bin, previous.err = harness.BuildAtCommit(ctx, previousVersion, "test/bench", "./candidate", "")
		if previous.err == nil {
			measure("building the previous version's candidate ("+previousVersion[:7]+")", time.Since(start).Round(time.Second))
			DeferCleanup(func() { _ = os.RemoveAll(filepath.Dir(previous.bin)) })
		}
	})
	Expect(previous.err).NotTo(HaveOccurred())
	return previous.bin
}

// lease reads the Lease lock of the upgrade spec.
func (s *scenario) lease(ctx context.Context) (*coordinationv1.Lease, error) {
	return cp.Client.CoordinationV1().Leases(s.ns).Get(ctx, versionLock, metav1.GetOptions{})
}

// leaseLock is the Lease the lifelock versions share.
func (s *scenario) leaseLock() owners {
	return owners{"the Lease", func(ctx context.Context) ([]metav1.OwnerReference, error) {
		l, err := s.lease(ctx)
		if err != nil {
			return nil, err
		}
		return l.OwnerReferences, nil
	}}
}

// expectLeaseLeader waits until r is the only replica acting and the Lease is owned by its Pod alone.
func (s *scenario) expectLeaseLeader(ctx context.Context, r *replica, timeout time.Duration) {
	s.expectLeaderOf(ctx, s.leaseLock(), r, timeout)
}

// expectLeaseHolds checks, for d, that r alone acts and owns the Lease, and that the replicas in waiting
// neither act nor exit.
func (s *scenario) expectLeaseHolds(ctx context.Context, r *replica, d time.Duration, waiting ...*replica) {
	s.expectHoldsOf(ctx, s.leaseLock(), r, d, waiting...)
}

// leaderOf waits until exactly one of rs acts and returns it, with the others.
func (s *scenario) leaderOf(ctx context.Context, rs ...*replica) (*replica, []*replica) {
	one := make([]types.GomegaMatcher, len(rs))
	for i, r := range rs {
		one[i] = ConsistOf(r.name)
	}
	Eventually(ctx, s.acting).WithTimeout(60*time.Second).Should(Or(one...), "one of the replicas leads")
	acting := s.acting()[0]
	var leader *replica
	var others []*replica
	for _, r := range rs {
		if r.name == acting {
			leader = r
		} else {
			others = append(others, r)
		}
	}
	s.expectLeaseLeader(ctx, leader, 30*time.Second)
	return leader, others
}

// statedBy returns whom the Lease's stops-within statement names ("" without one).
func statedBy(l *coordinationv1.Lease) string {
	_, who, _ := strings.Cut(l.Annotations[lifelock.StopsWithinAnnotation], " ")
	return who
}

// holderOf returns the Lease's holder identity.
func holderOf(l *coordinationv1.Lease) string {
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// evictRunning writes r's Pod Failed (Evicted) while its process runs, as Pod GC or a third party can: its
// holder is not proven stopped, so a successor must wait for it. It returns the witness clock just before
// the write.
func (s *scenario) evictRunning(ctx context.Context, r *replica) time.Duration {
	at := witness.Now()
	Expect(cp.SetPodPhase(ctx, r.pod, corev1.PodFailed, "Evicted")).To(Succeed())
	return at
}

// A Deployment of 2 replicas moves from the previous lifelock to this one and back, with maxSurge 1 and
// maxUnavailable 0, on one Lease; the Deployment controller's steps are played one by one. The two
// versions differ in the lock format: this one states its fence bound (lifelock.dev/stops-within, naming
// its holder), the previous one does not, and keeps the annotation when it takes the lock over. Every
// hand-over between versions is checked against the witness records of all replicas (newScenario), and the
// ones from a holder not proven stopped against the grace the reader of the lock owes it.
var _ = Describe("Rolling upgrade across lifelock versions", func() {
	var s *scenario
	BeforeEach(func(ctx SpecContext) { s = newScenario(ctx) })

	It("the previous lock format and this one on one Lease: upgrade, roll back, upgrade again; never two leaders, and no stated bound is taken from the wrong holder", func(ctx SpecContext) {
		prevBin := previousCandidate(ctx)
		args := []string{"-impl=life", "-lock=" + versionLock}
		prev := func(name string) *replica { return s.startProgram(ctx, name, life, prevBin, args...) }
		cur := func(name string) *replica { return s.startProgram(ctx, name, life, candidateBin, args...) }
		grace := lifelock.TimingsFor(0, 0).AcquisitionGrace

		By("the previous version runs: two replicas, one leads")
		p0, p1 := prev("prev-0"), prev("prev-1")
		p0.joined(ctx)
		p1.joined(ctx)
		prevLeader, rest := s.leaderOf(ctx, p0, p1)
		prevFollower := rest[0]
		l, err := s.lease(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(l.Annotations).NotTo(HaveKey(lifelock.StopsWithinAnnotation), "the previous version states no bound")

		By("upgrade: this version surges in, the old Pods go gracefully")
		c0 := cur("cur-0")
		c0.joined(ctx)
		s.expectLeaseHolds(ctx, prevLeader, 3*time.Second, prevFollower, c0)
		s.deleteGracefully(ctx, prevFollower)
		c1 := cur("cur-1")
		c1.joined(ctx)
		s.expectLeaseHolds(ctx, prevLeader, 3*time.Second, c0, c1)
		deleteRequest := witness.Now()
		s.deleteGracefully(ctx, prevLeader)
		curLeader, rest := s.leaderOf(ctx, c0, c1)
		curFollower := rest[0]
		oldSpans := s.spansOf(prevLeader.name)
		Expect(oldSpans).To(HaveLen(1))
		Expect(oldSpans[0].Stopped).To(BeTrue())
		newSpans := s.spansOf(curLeader.name)
		Expect(newSpans).To(HaveLen(1))
		measure("versions: upgrade, previous leader released -> this version leads (leaderless gap)", newSpans[0].Start-oldSpans[0].End)
		measure("versions: upgrade, previous leader's Pod delete request -> this version leads", newSpans[0].Start-deleteRequest)
		l, err = s.lease(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(statedBy(l)).To(Equal(holderOf(l)), "this version states its bound, naming itself")

		By("roll back: the previous version surges in; this version's leader is written Failed while it runs")
		p2 := prev("prev-2")
		p2.joined(ctx)
		s.expectLeaseHolds(ctx, curLeader, 3*time.Second, curFollower, p2)
		s.deleteGracefully(ctx, curFollower)
		p3 := prev("prev-3")
		p3.joined(ctx)
		s.expectLeaseHolds(ctx, curLeader, 3*time.Second, p2, p3)
		evicted := s.evictRunning(ctx, curLeader)
		prevLeader, _ = s.leaderOf(ctx, p2, p3)
		first := s.spansOf(prevLeader.name)
		Expect(first).To(HaveLen(1))
		measure("versions: roll back, this version's leader written Failed while running -> the previous version leads", first[0].Start-evicted)
		stopped := s.spansOf(curLeader.name)
		Expect(stopped).To(HaveLen(1))
		Expect(stopped[0].Stopped).To(BeTrue())
		measure("versions: roll back, written Failed -> this version's evicted leader's last act", stopped[0].End-evicted)
		l, err = s.lease(ctx)
		Expect(err).NotTo(HaveOccurred())
		if stated := statedBy(l); stated != "" {
			// The previous version kept this version's statement: it names the holder before, not this one.
			Expect(stated).NotTo(Equal(holderOf(l)))
			measure("versions: roll back, the previous version's takeover kept stops-within", "yes, naming the holder before it")
		} else {
			measure("versions: roll back, the previous version's takeover kept stops-within", "no")
		}

		By("upgrade again: this version finds a previous-version holder under a statement that names another; written Failed while running, it pays the full grace")
		c2 := cur("cur-2")
		c2.joined(ctx)
		s.expectLeaseHolds(ctx, prevLeader, 3*time.Second, c2)
		evicted = s.evictRunning(ctx, prevLeader)
		// The other previous-version replica is a candidate too; whoever takes over, it cannot prove the
		// evicted holder stopped and owes it the full grace (the previous version always waits it).
		var next *replica
		next, _ = s.leaderOf(ctx, c2, otherThan(prevLeader, p2, p3))
		took := s.spansOf(next.name)
		Expect(took).To(HaveLen(1))
		measure("versions: upgrade again, previous leader written Failed while running -> next leads ("+next.name+")", took[0].Start-evicted)
		Expect(took[0].Start-evicted).To(BeNumerically(">=", grace), "the successor waited the full acquisition grace, not a bound stated by another holder")
	}, SpecTimeout(5*time.Minute))
})

// otherThan returns the one of a, b that is not r.
func otherThan(r, a, b *replica) *replica {
	if r == a {
		return b
	}
	return a
}
