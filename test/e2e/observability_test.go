package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/lifelock/lifelock/pkg/lifelock"
	"github.com/lifelock/lifelock/pkg/manageropts"
	"github.com/lifelock/lifelock/test/harness"
	"github.com/lifelock/lifelock/test/harness/witness"
)

// These specs watch candidates from outside, as an operator's monitoring would: examples/manager runs as
// separate processes, each the container of its Pod, and the specs read their metrics endpoints, their
// probes, the lock object and the witness records of when each one acted.

// exampleLockName is examples/manager's LeaderElectionID.
const exampleLockName = "lifelock-example"

// The metrics the specs read, and their label sets.
const (
	masterStatusMetric = "leader_election_master_status" // client-go's elector, through controller-runtime
	acquisitionsMetric = "lifelock_acquisitions_total"
	acquireWaitMetric  = "lifelock_acquire_wait_seconds"
	stuckHolderMetric  = "lifelock_blocked_by_stuck_holder"
)

var exampleLockLabels = map[string]string{"name": exampleLockName}

func acquiredFor(reason string) map[string]string {
	return map[string]string{"name": exampleLockName, "reason": reason}
}

// buildExampleManager builds examples/manager for the specs of an Ordered container (call it from
// BeforeAll) and removes it after them.
func buildExampleManager(ctx context.Context) string {
	start := time.Now()
	bin, err := harness.BuildExampleManager(ctx, "")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, filepath.Dir(bin))
	_, _ = fmt.Fprintf(GinkgoWriter, "built examples/manager in %s\n", time.Since(start).Round(time.Millisecond))
	return bin
}

// exampleManager is examples/manager running as the container of its Pod, with its metrics and probe
// endpoints on the Pod's IP.
type exampleManager struct {
	*harness.Process
	name    string
	metrics string // URL of the metrics endpoint
	probes  string // base URL of the probe endpoint (/healthz, /readyz)
}

// startExampleManager runs bin with --leader-elect and args as the container of pod (a pending Pod, which
// the harness's kubelet publishes Running once the process started), connected as the administrator and
// recording when it acts in witnessDir, and kills it when the spec ends.
func startExampleManager(ctx context.Context, bin string, pod *corev1.Pod, witnessDir string, args ...string) *exampleManager {
	ip, err := harness.LocalIP()
	Expect(err).NotTo(HaveOccurred())
	metricsPort, probePort := freePort(ip), freePort(ip)
	for probePort == metricsPort {
		probePort = freePort(ip)
	}
	metricsAddr, probeAddr := net.JoinHostPort(ip, strconv.Itoa(metricsPort)), net.JoinHostPort(ip, strconv.Itoa(probePort))
	env := append(os.Environ(), "KUBECONFIG="+cp.Kubeconfig, witness.DirEnv+"="+witnessDir)
	args = append([]string{"--leader-elect", "--metrics-bind-address=" + metricsAddr, "--health-probe-bind-address=" + probeAddr}, args...)
	p, err := cp.StartContainer(ctx, pod, env, bin, args...)
	Expect(err).NotTo(HaveOccurred())
	m := &exampleManager{Process: p, name: pod.Name, metrics: "http://" + metricsAddr + "/metrics", probes: "http://" + probeAddr}
	DeferCleanup(func() {
		m.Kill()
		if CurrentSpecReport().Failed() {
			out := m.Output()
			_, _ = fmt.Fprintf(GinkgoWriter, "--- output of %s (last 8 KiB) ---\n%s\n", m.name, out[max(0, len(out)-8192):])
		}
	})
	return m
}

func freePort(ip string) int {
	port, err := harness.FreePort(ip)
	Expect(err).NotTo(HaveOccurred())
	return port
}

// sample returns, for Eventually and Consistently, one sample of the manager's metrics; it fails while the
// endpoint does not answer or has no such sample.
func (m *exampleManager) sample(ctx context.Context, name string, labels map[string]string) func() (float64, error) {
	return func() (float64, error) {
		ms, err := harness.ScrapeMetrics(ctx, m.metrics)
		if err != nil {
			return 0, err
		}
		v, ok := ms.Value(name, labels)
		if !ok {
			return 0, fmt.Errorf("%s has no sample %s", m.name, harness.Key(name, labels))
		}
		return v, nil
	}
}

// scrape reads the manager's metrics once.
func (m *exampleManager) scrape(ctx context.Context) harness.Metrics {
	ms, err := harness.ScrapeMetrics(ctx, m.metrics)
	Expect(err).NotTo(HaveOccurred())
	return ms
}

// probeAnswer is what a probe endpoint answered.
type probeAnswer struct {
	Code int
	Body string
}

// probe returns, for Eventually and Consistently, what url answers.
func probe(ctx context.Context, url string) func() (probeAnswer, error) {
	return func() (probeAnswer, error) {
		code, body, err := harness.Probe(ctx, url)
		return probeAnswer{Code: code, Body: body}, err
	}
}

// newWitness returns a fresh witness directory for candidate processes and its reader, and checks when the
// spec ends that no two of them acted at once.
func newWitness() (string, *harness.WitnessReader) {
	dir := GinkgoT().TempDir()
	wr := harness.NewWitnessReader(dir)
	DeferCleanup(func() {
		h, err := wr.Read()
		Expect(err).NotTo(HaveOccurred())
		Expect(h.Check()).To(Succeed())
	})
	return dir, wr
}

// everActed returns, for Consistently, who has ever acted according to the witness records, one entry per
// acting interval. Unlike actingIn it does not depend on heartbeats being on time, so a process the busy
// machine did not run for a while does not look stopped.
func everActed(wr *harness.WitnessReader) func() ([]string, error) {
	return func() ([]string, error) {
		h, err := wr.Read()
		if err != nil {
			return nil, err
		}
		var who []string
		for _, s := range h.Spans() {
			who = append(who, s.Who)
		}
		return who, nil
	}
}

// actingIn returns, for Eventually, who acts now according to the witness records.
func actingIn(wr *harness.WitnessReader) func() ([]string, error) {
	return func() ([]string, error) {
		h, err := wr.Read()
		if err != nil {
			return nil, err
		}
		return h.Acting(), nil
	}
}

// exampleLease reads examples/manager's lock in ns.
func exampleLease(ctx context.Context, ns string) (*coordinationv1.Lease, error) {
	return cp.Client.CoordinationV1().Leases(ns).Get(ctx, exampleLockName, metav1.GetOptions{})
}

// exampleLeaseOwner returns, for Eventually and Consistently, the UID of the Pod that owns the lock in ns.
func exampleLeaseOwner(ctx context.Context, ns string) func() (types.UID, error) {
	return func() (types.UID, error) {
		l, err := exampleLease(ctx, ns)
		if err != nil {
			return "", err
		}
		if len(l.OwnerReferences) != 1 {
			return "", fmt.Errorf("lock %s/%s has owners %v", ns, exampleLockName, l.OwnerReferences)
		}
		return l.OwnerReferences[0].UID, nil
	}
}

// exampleLeaderAndFollower starts examples/manager in Pod "a" on nodeA and, once a acts, in Pod "b" on the
// suite's Node with argsB, and waits until b is a settled follower.
func exampleLeaderAndFollower(ctx context.Context, bin, ns, nodeA, dir string, wr *harness.WitnessReader, argsB ...string) (a, b *exampleManager, podA, podB *corev1.Pod) {
	podA, err := cp.CreatePendingPod(ctx, ns, "a", nodeA)
	Expect(err).NotTo(HaveOccurred())
	a = startExampleManager(ctx, bin, podA, dir)
	Eventually(ctx, actingIn(wr)).WithTimeout(60*time.Second).WithPolling(50*time.Millisecond).Should(ConsistOf("a"), "a leads")
	podB = newPendingPod(ctx, ns, "b")
	b = startExampleManager(ctx, bin, podB, dir, argsB...)
	// The elector sets the gauge to 0 when it is created, and the lock its own gauge when its watches start.
	Eventually(ctx, b.sample(ctx, masterStatusMetric, exampleLockLabels)).WithTimeout(60*time.Second).Should(BeZero(), "b runs as a follower")
	Eventually(ctx, b.sample(ctx, stuckHolderMetric, exampleLockLabels)).WithTimeout(30 * time.Second).Should(BeZero())
	return a, b, podA, podB
}

var _ = Describe("Observability", Ordered, ContinueOnFailure, func() {
	var bin string
	BeforeAll(func(ctx SpecContext) { bin = buildExampleManager(ctx) }, NodeTimeout(5*time.Minute))

	Context("of separate manager processes, from their metrics endpoints", func() {
		var (
			ns  string
			dir string
			wr  *harness.WitnessReader
		)
		BeforeEach(func(ctx SpecContext) {
			ns = newNamespace(ctx)
			dir, wr = newWitness()
		})

		It("reports who leads, why the lock was acquired and how long the wait was, across a takeover from a killed leader", func(ctx SpecContext) {
			a, b, podA, podB := exampleLeaderAndFollower(ctx, bin, ns, node, dir, wr)
			Eventually(ctx, a.sample(ctx, masterStatusMetric, exampleLockLabels)).WithTimeout(10 * time.Second).Should(BeEquivalentTo(1))
			ma := a.scrape(ctx)
			Expect(ma).To(HaveKeyWithValue(harness.Key(acquisitionsMetric, acquiredFor("created")), BeEquivalentTo(1)))
			Expect(ma).To(HaveKeyWithValue(harness.Key(acquireWaitMetric+"_count", exampleLockLabels), BeEquivalentTo(1)))
			mb := b.scrape(ctx)
			Expect(mb).To(HaveKeyWithValue(harness.Key(masterStatusMetric, exampleLockLabels), BeZero()))
			Expect(mb).NotTo(HaveKey(harness.Key(acquireWaitMetric+"_count", exampleLockLabels)), "a follower has acquired nothing")
			Expect(mb).To(HaveKeyWithValue(harness.Key(acquisitionsMetric, acquiredFor("holder_pod_gone")), BeZero()),
				"a follower exports its acquisitions at 0 before it has any, so increase() will see its takeover")

			By("killing the leader and playing its kubelet: the delete request, the Pod terminal, the final delete")
			a.Kill()
			killed := time.Now()
			Expect(cp.DeletePodGracefully(ctx, podA)).To(Succeed())
			Eventually(ctx, actingIn(wr)).WithTimeout(60 * time.Second).WithPolling(20 * time.Millisecond).Should(ConsistOf("b"))
			measure("processes: failover after SIGKILL + Pod deleted (witness)", time.Since(killed))
			Eventually(ctx, b.sample(ctx, masterStatusMetric, exampleLockLabels)).WithTimeout(10 * time.Second).Should(BeEquivalentTo(1))
			mb = b.scrape(ctx)
			// The takeover counts once, for the terminal Pod or for its removal: the kubelet deletes the Pod
			// right after writing it terminal, and the follower judges whichever its watch shows when its
			// spread ends.
			terminal, gone := mb[harness.Key(acquisitionsMetric, acquiredFor("holder_terminal"))], mb[harness.Key(acquisitionsMetric, acquiredFor("holder_pod_gone"))]
			Expect(terminal+gone).To(BeEquivalentTo(1), "takeovers counted for the terminal Pod (%v) and for its removal (%v)", terminal, gone)
			Expect(mb).To(HaveKeyWithValue(harness.Key(acquisitionsMetric, acquiredFor("created")), BeZero()))
			Expect(mb).To(HaveKeyWithValue(harness.Key(acquireWaitMetric+"_count", exampleLockLabels), BeEquivalentTo(1)))
			Expect(mb).To(HaveKeyWithValue(harness.Key(acquireWaitMetric+"_sum", exampleLockLabels), BeNumerically(">", 0)))
			measure("processes: lifelock_acquire_wait_seconds_sum of the new leader (s)", mb[harness.Key(acquireWaitMetric+"_sum", exampleLockLabels)])
			Expect(exampleLeaseOwner(ctx, ns)()).To(Equal(podB.UID))

			h, err := wr.Read()
			Expect(err).NotTo(HaveOccurred())
			Expect(h.Check()).To(Succeed())
			Expect(h.Spans()).To(HaveExactElements(HaveField("Who", "a"), HaveField("Who", "b")))
		})

		It("counts a takeover from an evicted holder whose process runs, after that process fenced itself and exited", func(ctx SpecContext) {
			a, b, podA, podB := exampleLeaderAndFollower(ctx, bin, ns, node, dir, wr)
			before, err := exampleLease(ctx, ns)
			Expect(err).NotTo(HaveOccurred())

			Expect(cp.SetPodPhase(ctx, podA, corev1.PodFailed, "Evicted")).To(Succeed())
			evicted := time.Now()
			Eventually(a.Done()).WithTimeout(30*time.Second).Should(BeClosed(), "the evicted leader must stop")
			measure("processes: evicted leader's process exited", time.Since(evicted))
			Expect(a.ExitCode()).To(Equal(1), "the manager returns 'leader election lost' and exits 1")
			Eventually(ctx, actingIn(wr)).WithTimeout(60 * time.Second).WithPolling(20 * time.Millisecond).Should(ConsistOf("b"))
			measure("processes: takeover from an evicted holder (grace paid, witness)", time.Since(evicted))

			Eventually(ctx, b.sample(ctx, masterStatusMetric, exampleLockLabels)).WithTimeout(10 * time.Second).Should(BeEquivalentTo(1))
			mb := b.scrape(ctx)
			Expect(mb).To(HaveKeyWithValue(harness.Key(acquisitionsMetric, acquiredFor("holder_terminal")), BeEquivalentTo(1)))
			Expect(mb).To(HaveKeyWithValue(harness.Key(acquireWaitMetric+"_count", exampleLockLabels), BeEquivalentTo(1)))
			after, err := exampleLease(ctx, ns)
			Expect(err).NotTo(HaveOccurred())
			Expect(after.UID).To(Equal(before.UID), "taken over by Update, not re-created")
			Expect(after.OwnerReferences).To(ConsistOf(HaveField("UID", podB.UID)))
			Expect(ptr.Deref(after.Spec.LeaseTransitions, 0)).To(BeEquivalentTo(1))

			h, err := wr.Read()
			Expect(err).NotTo(HaveOccurred())
			Expect(h.Check()).To(Succeed(), "the evicted leader stopped acting before b started")
			gap, err := h.Gap("a", "b")
			Expect(err).NotTo(HaveOccurred())
			measure("processes: eviction: gap between a stopping and b acting (witness)", gap)
		})
	})
})

// The health check's spec stops the API server, so it runs alone, in the process that started it.
var _ = Describe("Observability", Serial, func() {
	Context("of the leader-lock health check", func() {
		// WatchFailureTolerance is short here, so the outage can be too; examples/manager has no flag for it.
		const tolerance = 2 * time.Second

		// healthManager is an in-process manager built with manageropts' NewManager, which registers the
		// lock's health check, serving its probes on a local port.
		type healthManager struct {
			mgr            manager.Manager
			done           chan struct{}
			healthz, ready string
		}
		start := func(ctx context.Context, pod *corev1.Pod, hist *harness.History) *healthManager {
			port := freePort("127.0.0.1")
			mopts := &manageropts.Options{Lock: lifelock.Options{PodName: pod.Name, PodNamespace: pod.Namespace, WatchFailureTolerance: tolerance}}
			mgr, err := mopts.NewManager(rest.CopyConfig(cp.Config), manager.Options{
				LeaderElection:          true,
				LeaderElectionID:        lockName,
				LeaderElectionNamespace: pod.Namespace,
				Metrics:                 metricsserver.Options{BindAddress: "0"},
				HealthProbeBindAddress:  net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
			})
			Expect(err).NotTo(HaveOccurred())
			Expect(mgr.AddReadyzCheck("readyz", healthz.Ping)).To(Succeed()) // as examples/manager does
			Expect(mgr.Add(harness.Actor(pod.Name, hist))).To(Succeed())
			m := &healthManager{mgr: mgr, done: make(chan struct{}), healthz: fmt.Sprintf("http://127.0.0.1:%d/healthz", port), ready: fmt.Sprintf("http://127.0.0.1:%d/readyz", port)}
			mctx, cancel := context.WithCancel(ctx)
			go func() {
				defer GinkgoRecover()
				defer close(m.done)
				_ = mgr.Start(mctx)
			}()
			DeferCleanup(func() {
				cancel()
				Eventually(m.done).WithTimeout(30 * time.Second).Should(BeClosed())
			})
			return m
		}

		It("fails a leader's /healthz, never its /readyz nor a follower's /healthz, while its lock watch is broken, and keeps it leading", func(ctx SpecContext) {
			ns, hist := newCheckedScenario(ctx)
			podA, podB := newPod(ctx, ns, "a"), newPod(ctx, ns, "b")
			a := start(ctx, podA, hist)
			Eventually(a.mgr.Elected()).WithTimeout(30 * time.Second).Should(BeClosed())
			b := start(ctx, podB, hist)
			for _, url := range []string{a.healthz, a.ready, b.healthz, b.ready} {
				Eventually(ctx, probe(ctx, url)).WithTimeout(30*time.Second).Should(HaveField("Code", 200), url)
			}
			before, err := cp.Client.CoordinationV1().Leases(ns).Get(ctx, lockName, metav1.GetOptions{})
			Expect(err).NotTo(HaveOccurred())

			By("stopping kube-apiserver: every lock watch breaks")
			DeferCleanup(func(ctx SpecContext) { Expect(cp.StartAPIServer(ctx)).To(Succeed()) }, NodeTimeout(2*time.Minute))
			Expect(cp.StopAPIServer()).To(Succeed())
			stopped := time.Now()
			Eventually(ctx, probe(ctx, a.healthz)).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).
				Should(And(HaveField("Code", 500), HaveField("Body", ContainSubstring("[-]leader-lock failed"))))
			measure("leader /healthz failing after kube-apiserver stopped (tolerance 2 s)", time.Since(stopped))
			Consistently(ctx, func(g Gomega) {
				g.Expect(probe(ctx, a.healthz)()).To(HaveField("Code", 500), "the leader stays unhealthy while the outage lasts")
				g.Expect(probe(ctx, a.ready)()).To(HaveField("Code", 200), "health, never readiness")
				g.Expect(probe(ctx, b.healthz)()).To(HaveField("Code", 200), "a follower is healthy")
				g.Expect(probe(ctx, b.ready)()).To(HaveField("Code", 200), "a follower is ready")
				g.Expect(hist.Acting()).To(ConsistOf("a"), "no stepping down on an API outage")
			}).WithTimeout(3 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
			Expect(a.done).NotTo(BeClosed())

			By("starting kube-apiserver again")
			Expect(cp.StartAPIServer(ctx)).To(Succeed())
			restarted := time.Now()
			Eventually(ctx, probe(ctx, a.healthz)).WithTimeout(60 * time.Second).WithPolling(100 * time.Millisecond).Should(HaveField("Code", 200))
			measure("leader /healthz healthy again after kube-apiserver started", time.Since(restarted))
			Consistently(ctx, func(g Gomega) {
				g.Expect(probe(ctx, a.healthz)()).To(HaveField("Code", 200))
				g.Expect(probe(ctx, b.healthz)()).To(HaveField("Code", 200))
				g.Expect(hist.Acting()).To(ConsistOf("a"))
			}).WithTimeout(2 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
			Expect(a.done).NotTo(BeClosed())
			Expect(b.mgr.Elected()).NotTo(BeClosed())
			Expect(hist.Spans()).To(HaveExactElements(HaveField("Who", "a")), "one uninterrupted term")
			after, err := cp.Client.CoordinationV1().Leases(ns).Get(ctx, lockName, metav1.GetOptions{})
			Expect(err).NotTo(HaveOccurred())
			Expect(after.ResourceVersion).To(Equal(before.ResourceVersion), "nothing was written to the lock")
		})
	})
})
