// Package interop runs operator-lib v0.19.0's leader.Become and lifelock's ConfigMap lock side by side on
// one lock name, as separate processes, each the container of its own Pod: the candidate program of the
// benchmark (../candidate) with -impl=oplib or -impl=life -kind=configmap. It checks that the two exclude
// each other in both directions, that a rolling upgrade from an operator-lib manager to a lifelock one hands
// over without two leaders, and what operator-lib's NotReady-node policy does to a lifelock leader. It also
// runs an older lifelock, built from this repository's history (versions_test.go), beside this one on one
// Lease through a rolling upgrade and back.
//
// It needs the control-plane binaries (KUBEBUILDER_ASSETS): run it with `make test-interop`.
package interop

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/lifelock/lifelock/pkg/lifelock"
	"github.com/lifelock/lifelock/test/harness"
	"github.com/lifelock/lifelock/test/harness/witness"
)

func TestInterop(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "operator-lib interop suite")
}

var (
	cp           *harness.ControlPlane
	candidateBin string // the built ../candidate
)

// lockName is the one lock name both implementations use.
const lockName = "interop-lock"

var _ = BeforeSuite(func(ctx SpecContext) {
	logf.SetLogger(GinkgoLogr)
	var err error
	candidateBin, err = harness.BuildBinary(ctx, "..", "./candidate", "")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { _ = os.RemoveAll(filepath.Dir(candidateBin)) })
	cp, err = harness.Start(ctx)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(cp.Stop()).To(Succeed()) })
}, NodeTimeout(5*time.Minute))

// impl is how a replica elects its leader: the candidate program's -impl.
type impl string

const (
	oplib impl = "oplib" // operator-lib's leader.Become, before the manager starts
	life  impl = "life"  // lifelock through manageropts, with -kind=configmap
)

// replica is one Pod of the operator and the process playing its container.
type replica struct {
	name string
	impl impl
	pod  *corev1.Pod
	proc *harness.Process
}

// scenario is one spec's namespace and the witness records of its replicas.
type scenario struct {
	ns       string
	dir      string
	witness  *harness.WitnessReader
	replicas []*replica
	// outsideGuarantee, when set, says why this scenario is outside lifelock's guarantee: an overlap is then
	// reported as a measurement, not a failure.
	outsideGuarantee string
}

// newScenario creates a namespace and a witness directory for one spec. When the spec ends it kills every
// replica still running and checks that no two replicas ever acted at once. Call it from BeforeEach.
func newScenario(ctx context.Context) *scenario {
	ns, err := cp.CreateNamespace(ctx, "interop")
	Expect(err).NotTo(HaveOccurred())
	s := &scenario{ns: ns, dir: GinkgoT().TempDir()}
	s.witness = harness.NewWitnessReader(s.dir)
	DeferCleanup(func() {
		h := s.history()
		for _, sp := range h.Spans() {
			GinkgoWriter.Printf("witness: %-8s acted [%s, %s] stopped=%t\n", sp.Who, sp.Start, sp.End, sp.Stopped)
		}
		if err := h.Check(); err != nil && s.outsideGuarantee != "" {
			AddReportEntry("overlap outside lifelock's guarantee ("+s.outsideGuarantee+")", err.Error())
			return
		}
		Expect(h.Check()).To(Succeed(), "two replicas acted at once")
	})
	DeferCleanup(func() {
		for _, r := range s.replicas {
			r.proc.Kill()
		}
		if CurrentSpecReport().Failed() {
			for _, r := range s.replicas {
				GinkgoWriter.Printf("--- output of %s (%s) ---\n%s\n", r.name, r.impl, tail(r.proc.Output()))
			}
		}
	})
	return s
}

// start creates the Pod name on its own Ready Node and runs the candidate in it with impl.
func (s *scenario) start(ctx context.Context, name string, i impl) *replica {
	args := []string{"-impl=" + string(i), "-lock=" + lockName}
	if i == life {
		args = append(args, "-kind=configmap")
	}
	return s.startProgram(ctx, name, i, candidateBin, args...)
}

// startProgram creates the Pod name on its own Ready Node and runs program in it with args; i says how it
// elects (what joined waits for).
func (s *scenario) startProgram(ctx context.Context, name string, i impl, program string, args ...string) *replica {
	node := s.ns + "-" + name
	Expect(cp.EnsureNode(ctx, node)).To(Succeed())
	pod, err := cp.CreatePendingPod(ctx, s.ns, name, node)
	Expect(err).NotTo(HaveOccurred())
	env := append(os.Environ(), "KUBECONFIG="+cp.Kubeconfig, witness.DirEnv+"="+s.dir)
	proc, err := cp.StartContainer(ctx, pod, env, program, args...)
	Expect(err).NotTo(HaveOccurred())
	r := &replica{name: name, impl: i, pod: proc.Pod, proc: proc}
	s.replicas = append(s.replicas, r)
	return r
}

// joined waits until r has made its first attempt at the lock. The log line is only the moment to go on
// from; what the replica does next is judged from the cluster and the witness records.
func (r *replica) joined(ctx context.Context) {
	marks := []string{"Attempting to acquire leader lease"} // client-go's elector, before its first attempt
	if r.impl == oplib {
		marks = []string{"Not the leader. Waiting.", "Became the leader."} // after Become's first Create
	}
	Eventually(ctx, func(g Gomega) {
		g.Expect(r.proc.Done()).NotTo(BeClosed(), "%s exited", r.name)
		out := r.proc.Output()
		g.Expect(marks).To(ContainElement(Satisfy(func(m string) bool { return strings.Contains(out, m) })))
	}).WithTimeout(60*time.Second).WithPolling(20*time.Millisecond).Should(Succeed(), "%s joins the election", r.name)
}

// ownedBy is the one ownerReference operator-lib and lifelock's ConfigMap kind write: the holder's Pod.
func ownedBy(pod *corev1.Pod) []metav1.OwnerReference {
	return []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID}}
}

// lock reads the ConfigMap lock.
func (s *scenario) lock(ctx context.Context) (*corev1.ConfigMap, error) {
	return cp.Client.CoreV1().ConfigMaps(s.ns).Get(ctx, lockName, metav1.GetOptions{})
}

// watchLock watches the ConfigMap lock from resourceVersion on, and returns what has happened to it so far,
// one line per change: the event type, the object's UID, and "released" (lifelock's mark) or "owned by
// <Pod>".
func (s *scenario) watchLock(ctx context.Context, resourceVersion string) func() []string {
	w, err := cp.Client.CoreV1().ConfigMaps(s.ns).Watch(ctx, metav1.ListOptions{
		FieldSelector:   fields.OneTermEqualSelector("metadata.name", lockName).String(),
		ResourceVersion: resourceVersion,
	})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(w.Stop)
	var (
		mu      sync.Mutex
		changes []string
	)
	go func() {
		defer GinkgoRecover()
		for ev := range w.ResultChan() {
			cm, ok := ev.Object.(*corev1.ConfigMap)
			if !ok {
				continue
			}
			state := "released"
			if _, released := cm.Annotations[lifelock.ReleasedAnnotation]; !released {
				owners := make([]string, 0, len(cm.OwnerReferences))
				for _, o := range cm.OwnerReferences {
					owners = append(owners, o.Name)
				}
				state = "owned by " + strings.Join(owners, ",")
			}
			mu.Lock()
			changes = append(changes, fmt.Sprintf("%s %s %s", ev.Type, cm.UID, state))
			mu.Unlock()
		}
	}()
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(changes)
	}
}

// history reads the witness records of every replica of the spec so far.
func (s *scenario) history() *harness.History {
	h, err := s.witness.Read()
	Expect(err).NotTo(HaveOccurred())
	return h
}

// acting names the replicas acting now.
func (s *scenario) acting() []string { return s.history().Acting() }

// spansOf returns the acting intervals of the replica who.
func (s *scenario) spansOf(who string) []harness.Span {
	return s.history().Find(func(sp harness.Span) bool { return sp.Who == who })
}

// owners reads the ownerReferences of the lock the replicas share; what names it in failures.
type owners struct {
	what string
	read func(ctx context.Context) ([]metav1.OwnerReference, error)
}

// configMapLock is the ConfigMap lock that operator-lib and lifelock replicas share.
func (s *scenario) configMapLock() owners {
	return owners{"the lock", func(ctx context.Context) ([]metav1.OwnerReference, error) {
		cm, err := s.lock(ctx)
		if err != nil {
			return nil, err
		}
		return cm.OwnerReferences, nil
	}}
}

// expectLeader waits until r is the only replica acting and the ConfigMap lock is owned by its Pod alone.
func (s *scenario) expectLeader(ctx context.Context, r *replica, timeout time.Duration) {
	s.expectLeaderOf(ctx, s.configMapLock(), r, timeout)
}

// expectLeaderOf waits until r is the only replica acting and lock is owned by its Pod alone.
func (s *scenario) expectLeaderOf(ctx context.Context, lock owners, r *replica, timeout time.Duration) {
	Eventually(ctx, func(g Gomega) {
		g.Expect(s.acting()).To(ConsistOf(r.name))
		refs, err := lock.read(ctx)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(refs).To(Equal(ownedBy(r.pod)))
	}).WithTimeout(timeout).WithPolling(10*time.Millisecond).Should(Succeed(), "%s leads and owns %s", r.name, lock.what)
}

// expectHolds checks, for d, that r alone acts, holds the ConfigMap lock, and that the replicas in waiting
// neither act nor exit.
func (s *scenario) expectHolds(ctx context.Context, r *replica, d time.Duration, waiting ...*replica) {
	s.expectHoldsOf(ctx, s.configMapLock(), r, d, waiting...)
}

// expectHoldsOf checks, for d, that r alone acts and owns lock, and that the replicas in waiting neither
// act nor exit.
func (s *scenario) expectHoldsOf(ctx context.Context, lock owners, r *replica, d time.Duration, waiting ...*replica) {
	spans := len(s.spansOf(r.name))
	Consistently(ctx, func(g Gomega) {
		// r acts on, in the same interval: it neither stopped (nor exited) nor started again. Checked by its
		// record and its process rather than by heartbeats, which a busy machine can delay.
		g.Expect(s.spansOf(r.name)).To(HaveLen(spans), "%s started acting again", r.name)
		g.Expect(r.proc.Done()).NotTo(BeClosed(), "%s exited", r.name)
		for _, w := range waiting {
			g.Expect(s.spansOf(w.name)).To(BeEmpty(), "%s acted", w.name)
			g.Expect(w.proc.Done()).NotTo(BeClosed(), "%s exited", w.name)
		}
		refs, err := lock.read(ctx)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(refs).To(Equal(ownedBy(r.pod)))
	}).WithTimeout(d).WithPolling(100*time.Millisecond).Should(Succeed(), "%s keeps %s", r.name, lock.what)
}

// firstStartAfter waits for the first acting interval that starts after t0 (a witness.Now reading).
func (s *scenario) firstStartAfter(ctx context.Context, t0 time.Duration, timeout time.Duration) harness.Span {
	var first harness.Span
	Eventually(ctx, func() bool {
		found := false
		for _, sp := range s.history().Spans() {
			if sp.Start > t0 && (!found || sp.Start < first.Start) {
				first, found = sp, true
			}
		}
		return found
	}).WithTimeout(timeout).WithPolling(5*time.Millisecond).Should(BeTrue(), "a replica acts after %s", t0)
	return first
}

// crash kills r's process and plays the API server and a real kubelet after a crash: the Pod's delete
// request, its containers written terminated (exit 137) with the phase Failed in one status write, and
// kubelet's final delete with grace 0. It returns the witness clock just before the status write: from then
// on the Pod is terminal.
func (s *scenario) crash(ctx context.Context, r *replica) time.Duration {
	r.proc.Kill()
	Expect(cp.Client.CoreV1().Pods(s.ns).Delete(ctx, r.name, metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(r.pod.UID))})).To(Succeed())
	deleted := witness.Now()
	Expect(cp.TerminatePod(ctx, r.pod, 137)).To(Succeed())
	Expect(cp.ForceDeletePod(ctx, r.pod)).To(Succeed())
	return deleted
}

// deleteGracefully plays the graceful deletion of r's Pod, as a rolling update or a drain does it: the
// delete request (the Pod is Terminating), SIGTERM, the process's exit, its container written terminated
// with the phase terminal in one status write (as a real kubelet does), and kubelet's final delete with
// grace 0. It returns the witness clock just before the status write.
func (s *scenario) deleteGracefully(ctx context.Context, r *replica) time.Duration {
	Expect(cp.Client.CoreV1().Pods(s.ns).Delete(ctx, r.name, metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(r.pod.UID))})).To(Succeed())
	Expect(r.proc.Signal(syscall.SIGTERM)).To(Succeed())
	Eventually(r.proc.Done()).WithTimeout(60*time.Second).Should(BeClosed(), "%s exits after SIGTERM", r.name)
	deleted := witness.Now()
	Expect(cp.TerminatePod(ctx, r.pod, int32(max(0, r.proc.ExitCode())))).To(Succeed())
	Expect(cp.ForceDeletePod(ctx, r.pod)).To(Succeed())
	Eventually(ctx, func() bool {
		_, err := cp.Client.CoreV1().Pods(s.ns).Get(ctx, r.name, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}).WithTimeout(30*time.Second).Should(BeTrue(), "%s's Pod is gone", r.name)
	return deleted
}

// configMapCreateConflicts is kube-apiserver's count of ConfigMap creates refused with 409 (AlreadyExists):
// operator-lib's attempts at a held lock. The suite's specs run one at a time, and lifelock never creates a
// lock it sees held, so a difference of two readings counts an operator-lib replica's retries.
func configMapCreateConflicts(ctx context.Context) float64 {
	raw, err := cp.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	Expect(err).NotTo(HaveOccurred())
	m, err := harness.ParseMetrics(bytes.NewReader(raw))
	Expect(err).NotTo(HaveOccurred())
	return m.Sum("apiserver_request_total", map[string]string{"verb": "POST", "resource": "configmaps", "code": "409"})
}

// measured collects what the specs measure, printed at the end of the run.
var measured = map[string][]any{}

// measure records a figure under name as a report entry and prints it.
func measure(name string, v any) {
	measured[name] = append(measured[name], v)
	AddReportEntry(name, fmt.Sprint(v))
	GinkgoWriter.Printf("%s: %v\n", name, v)
}

var _ = ReportAfterSuite("measured latencies", func(Report) {
	names := make([]string, 0, len(measured))
	for n := range measured {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Printf("measured %-70s %v\n", n+":", measured[n])
	}
})

func tail(s string) string {
	const keep = 8192
	if len(s) > keep {
		return "..." + s[len(s)-keep:]
	}
	return s
}
