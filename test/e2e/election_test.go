package e2e

import (
	"fmt"
	"strings"
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
	BeforeEach(func(ctx SpecContext) { ns, hist = newCheckedScenario(ctx) })

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

	It("spreads the followers' attempts when the lock frees, so that those who draw a later turn send nothing", func(ctx SpecContext) {
		a := startCandidate(ctx, harness.CandidateOptions{LockName: lockName, Pod: newPod(ctx, ns, "a"), History: hist})
		Eventually(a.Elected()).WithTimeout(10 * time.Second).Should(BeClosed())
		counter := harness.NewRequestCounter()
		cfg := counter.Wrap(cp.Config)
		spread := 3 * time.Second
		var followers []*harness.Candidate
		for _, name := range []string{"b", "c", "d", "e", "f"} {
			f := startCandidate(ctx, harness.CandidateOptions{LockName: lockName, Pod: newPod(ctx, ns, name), History: hist, Config: cfg,
				Lock: lifelock.Options{AcquireSpread: &spread}})
			Eventually(f.Lock.Holder).WithTimeout(10 * time.Second).Should(Equal(a.Lock.Identity()))
			followers = append(followers, f)
		}
		before := counter.Snapshot()
		Expect(a.Stop(10 * time.Second)).To(Succeed()) // releases the lock: every follower may take it over
		Eventually(func() int {
			n := 0
			for _, f := range followers {
				select {
				case <-f.Elected():
					n++
				default:
				}
			}
			return n
		}).WithTimeout(10 * time.Second).Should(Equal(1))
		writes := 0
		for key, n := range counter.Snapshot() {
			if strings.Contains(key, "/leases") && (strings.HasPrefix(key, "PUT ") || strings.HasPrefix(key, "POST ")) {
				writes += n - before[key]
			}
		}
		// Without the spread all five write at once. With draws spread over 3 s, a second write needs two
		// draws within the time the first write takes to be seen (tens of milliseconds).
		Expect(writes).To(And(BeNumerically(">=", 1), BeNumerically("<=", 2)), "lease writes by the followers")
	})

	It("makes no API request at all while the election is idle", func(ctx SpecContext) {
		counter := harness.NewRequestCounter()
		cfg := counter.Wrap(cp.Config)
		var cands []*harness.Candidate
		for _, name := range []string{"a", "b", "c"} {
			cands = append(cands, startCandidate(ctx, harness.CandidateOptions{LockName: lockName, Pod: newPod(ctx, ns, name), History: hist, Config: cfg}))
		}
		// Which of the three wins is random (they start together and spread their attempts).
		var leader *harness.Candidate
		Eventually(func() *harness.Candidate {
			for _, c := range cands {
				select {
				case <-c.Elected():
					leader = c
				default:
				}
			}
			return leader
		}).WithTimeout(10 * time.Second).ShouldNot(BeNil())
		for _, c := range cands {
			Eventually(c.Lock.Holder).WithTimeout(10 * time.Second).Should(Equal(leader.Lock.Identity()))
		}
		// The election's last start-up requests: every candidate watches the holder's Node (this identity
		// may read Nodes), and the leader writes its BecameLeader Event on the lock and on its Pod.
		Eventually(counter.Snapshot).WithTimeout(10 * time.Second).Should(And(
			HaveKeyWithValue("WATCH /api/v1/nodes", 3),
			HaveKeyWithValue("POST /api/v1/namespaces/"+ns+"/events", 2),
		))
		startup := counter.Snapshot()
		const window = 20 * time.Second
		Consistently(counter.Total).WithTimeout(window).WithPolling(time.Second).Should(Equal(counter.Total()))
		measure("steady-state API requests of 3 candidates in 20 s", counter.Total()-sum(startup))
		_, _ = fmt.Fprintf(GinkgoWriter, "start-up requests of 3 candidates: %v\n", startup)
	})
})

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
