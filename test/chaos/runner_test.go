package chaos

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"

	"github.com/lifelock/lifelock/pkg/lifelock"
	"github.com/lifelock/lifelock/test/harness"
	"github.com/lifelock/lifelock/test/harness/witness"
)

// kind is a kind of disruption.
type kind string

const (
	kill             kind = "SIGKILL + Pod deleted"
	term             kind = "SIGTERM + Pod deleted"
	evict            kind = "evicted (Failed), process alive"
	statefulSet      kind = "StatefulSet restart (same name, new UID)"
	containerRestart kind = "container restart (same Pod)"
	nodeNotReady     kind = "leader's Node NotReady"
	apiserverRestart kind = "kube-apiserver restart"
	cutLatency       kind = "proxy: +300 ms latency"
	cutBlackhole     kind = "proxy: blackhole"
	cutReset         kind = "proxy: connection resets"
	pause            kind = "leader paused 300 ms (SIGSTOP)"
	busy             kind = "every core kept busy 2 s"
)

// allKinds is every disruption, in the order of the report.
var allKinds = []kind{kill, term, evict, statefulSet, containerRestart, nodeNotReady, apiserverRestart, cutLatency, cutBlackhole, cutReset, pause, busy}

// kindNames are the kinds' names for -chaos.kinds.
var kindNames = map[string]kind{
	"kill": kill, "term": term, "evict": evict, "statefulset": statefulSet, "container-restart": containerRestart,
	"node-notready": nodeNotReady, "apiserver-restart": apiserverRestart, "latency": cutLatency, "blackhole": cutBlackhole, "reset": cutReset,
	"pause": pause, "busy": busy,
}

// changesLeader says whether a disruption ends the leader's term, so that another Pod leads after it.
// A container restart keeps the lock with the same Pod; the others must not move it.
func (k kind) changesLeader() bool {
	return k == kill || k == term || k == evict || k == statefulSet
}

const (
	lockName       = "lifelock-example"     // examples/manager's LeaderElectionID
	electTimeout   = 20 * time.Second       // for one leader to emerge after a disruption
	exitTimeout    = 15 * time.Second       // for a disrupted process to exit
	holdFault      = 2 * time.Second        // how long a fault (NotReady, a proxy fault, busy cores) lasts
	pauseFor       = 300 * time.Millisecond // a stop-the-world pause of the leader's process, as a long GC
	terminateGrace = 10 * time.Second
	// After a connection fault or an API server outage, client-go's reflectors back off (0.8 s, doubling
	// with each failure) before they watch again, and until then a process's view of the cluster is stale.
	// A leader in that state is one "cut off from the API server", for which the guarantee beyond the
	// kubelet contract does not hold (an eviction written then is seen late; see the README's known
	// limit), so the next round waits, with the leader steady, until the watches have had time to resume.
	settleAfterFault  = 2 * time.Second
	settleAfterOutage = 4 * time.Second
)

// fenceBound is how long a leader that lost its lock may go on acting: the bound examples/manager (a
// manageropts manager, which stops on Lock.Lost) states in its lock, and that a successor that cannot prove
// it stopped waits for, with the default timings.
var fenceBound = lifelock.TimingsFor(0, 0).FenceBound

// candidate is one examples/manager process, the Pod it plays and its connection to the API server.
type candidate struct {
	name  string
	pod   *corev1.Pod
	proc  *harness.Process
	proxy *Proxy
	env   []string
	probe string // host:port of its health probes
}

// result is what one round measured.
type result struct {
	kind kind
	// latency is the time from the disruption to the next leader acting, for kinds that change (or
	// re-elect, for a container restart) the leader.
	latency time.Duration
	changed bool // another Pod leads after the round
	// For a leader change: the new leader paid the acquisition grace, and it had never seen the lock held
	// (a creation with no previous holder), as its "Acquired lock" log line says.
	gracePaid, unseen bool
	fence             time.Duration // for an eviction: how long the evicted leader went on acting
}

type runner struct {
	rng        *rand.Rand
	ns         string
	dir        string // witness records
	confDir    string // the candidates' kubeconfigs
	witness    *harness.WitnessReader
	lockStates *lockStates
	cands      []*candidate
	all        []*candidate // every candidate ever started, for the report of a failure
	deck       []kind
	next       int // for candidate names
	results    []result
	last       harness.Span // the leader's span when the previous round ended
}

func newRunner(ctx context.Context, s int64) *runner {
	ns, err := cp.CreateNamespace(ctx, "chaos")
	Expect(err).NotTo(HaveOccurred())
	r := &runner{rng: rand.New(rand.NewPCG(uint64(s), 0)), ns: ns, dir: GinkgoT().TempDir(), confDir: GinkgoT().TempDir()}
	r.witness = harness.NewWitnessReader(r.dir)
	r.lockStates = watchLockStates(ctx, cp.Client, ns, lockName)
	DeferCleanup(func() {
		for _, c := range r.cands {
			c.proc.Kill()
		}
		if !CurrentSpecReport().Failed() {
			return
		}
		for _, c := range r.all[max(0, len(r.all)-6):] { // the last ones, alive or not
			GinkgoWriter.Printf("--- output of %s (last 4 KiB) ---\n%s\n", c.name, tail(c.proc.Output(), 4096))
		}
	})
	for range *candidates {
		r.startCandidate(ctx, r.newName())
	}
	return r
}

func (r *runner) newName() string {
	r.next++
	return fmt.Sprintf("cand-%d", r.next)
}

// startCandidate creates the Pod name (bound to its own Node) and runs examples/manager in it, connected
// to the API server through its own fault-injecting proxy.
func (r *runner) startCandidate(ctx context.Context, name string) *candidate {
	node := "node-" + name
	Expect(cp.EnsureNode(ctx, node)).To(Succeed())
	Expect(cp.SetNodeReady(ctx, node, true)).To(Succeed())
	pod, err := cp.CreatePendingPod(ctx, r.ns, name, node)
	Expect(err).NotTo(HaveOccurred())
	c := &candidate{name: name, pod: pod}
	c.proxy, err = faults.Proxy(name+"-"+string(pod.UID), apiserverAddress())
	Expect(err).NotTo(HaveOccurred())
	kubeconfig := filepath.Join(r.confDir, name+"-"+string(pod.UID)+".kubeconfig")
	Expect(KubeconfigThrough(cp.Kubeconfig, c.proxy.Addr(), kubeconfig)).To(Succeed())
	c.env = append(os.Environ(), "KUBECONFIG="+kubeconfig, witness.DirEnv+"="+r.dir)
	// The first start in the kubelet's order: the process runs before the Pod's IP is published.
	port, err := harness.FreePort("127.0.0.1")
	Expect(err).NotTo(HaveOccurred())
	c.probe = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	c.proc, err = cp.StartContainer(ctx, pod, c.env, manager, c.args()...)
	Expect(err).NotTo(HaveOccurred())
	c.pod = c.proc.Pod
	r.cands, r.all = append(r.cands, c), append(r.all, c)
	return c
}

// args are examples/manager's arguments: election on, metrics off, probes on the candidate's own port.
func (c *candidate) args() []string {
	return []string{"--leader-elect", "--health-probe-bind-address=" + c.probe, "--metrics-bind-address=0"}
}

// ready reports whether the candidate's /readyz passes: its lock's readiness check says it has synced the
// watches that let it prove the holder stopped (lifelock.Lock.ReadyCheck).
func (c *candidate) ready(ctx context.Context) bool {
	code, _, err := harness.Probe(ctx, "http://"+c.probe+"/readyz")
	return err == nil && code == http.StatusOK
}

// restart starts the candidate's process again in its Pod, as a kubelet restarts a container: the Pod
// keeps its IP.
func (r *runner) restart(c *candidate) {
	var err error
	c.proc, err = harness.StartPodProcess(c.pod, c.env, manager, c.args()...)
	Expect(err).NotTo(HaveOccurred())
}

func apiserverAddress() string {
	u, err := url.Parse(cp.Config.Host)
	Expect(err).NotTo(HaveOccurred())
	return u.Host
}

func (r *runner) remove(c *candidate) {
	r.cands = slices.DeleteFunc(r.cands, func(o *candidate) bool { return o == c })
	c.proxy.Close()
}

func (r *runner) history() *harness.History {
	h, err := r.witness.Read()
	Expect(err).NotTo(HaveOccurred())
	return h
}

// leader waits until exactly one process acts, in a span other than not (the zero Span: any), and returns
// its candidate and its span. A killed process's span counts as acting until its heartbeats are stale.
func (r *runner) leader(ctx context.Context, timeout time.Duration, not harness.Span) (*candidate, harness.Span) {
	var span harness.Span
	Eventually(ctx, func() []string {
		var acting []string
		for _, s := range r.history().Spans() {
			if !s.Stopped {
				acting, span = append(acting, s.Process), s
			}
		}
		return acting
	}).WithTimeout(timeout).WithPolling(5*time.Millisecond).Should(And(HaveLen(1), Not(ContainElement(not.Process))), "exactly one leader")
	for _, c := range r.cands {
		if c.name == span.Who {
			return c, span
		}
	}
	Fail(fmt.Sprintf("%s acts but is not a running candidate", span.Who))
	return nil, span
}

// parseKinds reads -chaos.kinds: a comma-separated list of kindNames, or "" for every kind.
func parseKinds(s string) ([]kind, error) {
	if s == "" {
		return allKinds, nil
	}
	var out []kind
	for _, f := range strings.Split(s, ",") {
		k, ok := kindNames[strings.TrimSpace(f)]
		if !ok {
			names := slices.Sorted(maps.Keys(kindNames))
			return nil, fmt.Errorf("unknown kind of disruption %q; use some of %s", f, strings.Join(names, ", "))
		}
		out = append(out, k)
	}
	return out, nil
}

// draw returns the next kind: the kinds (-chaos.kinds) are dealt from shuffled decks, so that every kind
// comes once in each deck, in a seeded random order.
func (r *runner) draw() kind {
	if len(r.deck) == 0 {
		kinds, err := parseKinds(*kindsFlag)
		Expect(err).NotTo(HaveOccurred())
		r.deck = slices.Clone(kinds)
		r.rng.Shuffle(len(r.deck), func(i, j int) { r.deck[i], r.deck[j] = r.deck[j], r.deck[i] })
	}
	k := r.deck[0]
	r.deck = r.deck[1:]
	return k
}

// round applies one disruption to a settled election and checks what follows: one leader, the right one,
// no overlap, and a lock in a state docs/design.md names.
func (r *runner) round(ctx context.Context, i int) {
	k := r.draw()
	old, oldSpan := r.leader(ctx, electTimeout, harness.Span{})
	if i > 0 {
		Expect(oldSpan).To(And(HaveField("Process", r.last.Process), HaveField("Start", r.last.Start)),
			"the leader changed between rounds %d and %d, with no disruption", i, i+1)
	}
	By(fmt.Sprintf("round %d: %s (leader %s)", i+1, k, old.name))
	res := result{kind: k}
	t0 := witness.Now()
	switch k {
	case kill:
		old.proc.Kill()
		Expect(cp.DeletePodGracefully(ctx, old.pod)).To(Succeed())
		r.remove(old)
	case term:
		Expect(old.proc.Stop(terminateGrace)).To(Succeed(), "SIGTERM: the manager must exit 0")
		Expect(cp.DeletePodGracefully(ctx, old.pod)).To(Succeed())
		r.remove(old)
	case evict:
		Expect(cp.SetPodPhase(ctx, old.pod, corev1.PodFailed, "Evicted")).To(Succeed())
		Eventually(old.proc.Done()).WithTimeout(exitTimeout).Should(BeClosed(), "an evicted leader must stop")
		Expect(cp.ForceDeletePod(ctx, old.pod)).To(Succeed()) // a Failed Pod goes at once
		r.remove(old)
	case statefulSet:
		Expect(old.proc.Stop(terminateGrace)).To(Succeed())
		Expect(cp.DeletePodGracefully(ctx, old.pod)).To(Succeed())
		r.remove(old)
		r.startCandidate(ctx, old.name)
	case containerRestart:
		old.proc.Kill()
		r.restart(old)
	case nodeNotReady:
		Expect(cp.SetNodeReady(ctx, old.pod.Spec.NodeName, false)).To(Succeed())
		r.expectSteady(ctx, old, holdFault)
		Expect(cp.SetNodeReady(ctx, old.pod.Spec.NodeName, true)).To(Succeed())
	case apiserverRestart:
		Expect(cp.RestartAPIServer(ctx)).To(Succeed())
		r.expectSteady(ctx, old, settleAfterOutage)
	case pause:
		// A healthy leader whose process stops for a while must not lose its lock: the elector's renewal
		// that the pause delays answers from the watch once it resumes, within the renew deadline (500 ms).
		Expect(old.proc.Signal(syscall.SIGSTOP)).To(Succeed())
		<-time.After(pauseFor) // the length of the fault itself
		Expect(old.proc.Signal(syscall.SIGCONT)).To(Succeed())
		Eventually(ctx, func() []string { return r.history().Acting() }).WithTimeout(time.Second).WithPolling(5*time.Millisecond).
			Should(ConsistOf(old.name), "the paused leader acts again once resumed")
		r.expectSteady(ctx, old, time.Second)
	case busy:
		// Starved of CPU by as many spinning threads as there are cores, a healthy leader keeps its lock
		// (its witness may beat late, so only the outcome is checked).
		stop := burnCPU(runtime.NumCPU())
		<-time.After(holdFault) // the length of the fault itself
		stop()
	case cutLatency, cutBlackhole, cutReset:
		target := old
		if r.rng.IntN(2) == 0 { // the leader or a follower, at random
			target = r.cands[r.rng.IntN(len(r.cands))]
		}
		Expect(target.proxy.Inject(faultOf(k))).To(Succeed())
		r.expectSteady(ctx, old, holdFault)
		Expect(target.proxy.Heal()).To(Succeed())
		r.expectSteady(ctx, old, settleAfterFault)
	}

	var not harness.Span // a disruption that must not move the lock: the same span goes on
	if k.changesLeader() || k == containerRestart {
		not = oldSpan
	}
	now, nowSpan := r.leader(ctx, electTimeout, not)
	switch {
	case k.changesLeader():
		Expect(nowSpan.Process).NotTo(Equal(oldSpan.Process))
		if k != statefulSet {
			Expect(now.name).NotTo(Equal(old.name), "the disrupted Pod cannot lead again")
		}
		res.latency, res.changed = nowSpan.Start-t0, true
		res.gracePaid, res.unseen = acquiredHow(now.proc.Output())
	case k == containerRestart:
		Expect(now.name).To(Equal(old.name), "the lock stays with the Pod whose container restarted")
		Expect(nowSpan.Process).NotTo(Equal(oldSpan.Process))
		res.latency = nowSpan.Start - t0
	default:
		Expect(nowSpan.Process).To(Equal(oldSpan.Process), "%s must not move the lock", k)
		Expect(nowSpan.Start).To(Equal(oldSpan.Start), "%s must not interrupt the leader", k)
	}
	Expect(r.history().Check()).To(Succeed(), "round %d (%s)", i+1, k)
	if k == evict {
		res.fence = r.endOf(oldSpan.Process) - t0
		Expect(res.fence).To(BeNumerically("<=", fenceBound), "the evicted leader acted too long after losing its lock")
	}
	Expect(r.lockStates.violations()).To(BeEmpty(), "round %d (%s)", i+1, k)
	r.results, r.last = append(r.results, res), nowSpan
	for len(r.cands) < *candidates {
		r.startCandidate(ctx, r.newName())
	}
	// As a Deployment's rolling update does: the next disruption comes once every candidate is ready, that
	// is, has seen the holder (a candidate that never saw it cannot prove it stopped, and pays the grace).
	for _, c := range r.cands {
		Eventually(ctx, c.ready).WithTimeout(electTimeout).WithPolling(20*time.Millisecond).Should(BeTrue(), "%s becomes ready", c.name)
	}
}

// burnCPU keeps n goroutines spinning, each on its own thread, until the returned function is called.
func burnCPU(n int) (stop func()) {
	var done atomic.Bool
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			spins := 0
			for !done.Load() {
				spins++
			}
			_ = spins
		})
	}
	return func() { done.Store(true); wg.Wait() }
}

// expectSteady asserts that leader goes on acting, alone, for d: no other process acts, and the leader's
// span neither records a stop nor gives way to another. A leader whose heartbeats go silent for a while
// (its process starved of CPU on a loaded machine) still counts as acting if they resume in the same span
// within a second after d; one that lost its lock records a stop, and one that died stays silent.
func (r *runner) expectSteady(ctx context.Context, leader *candidate, d time.Duration) {
	last := func() (harness.Span, bool) {
		spans := r.history().Find(func(s harness.Span) bool { return s.Who == leader.name })
		if len(spans) == 0 {
			return harness.Span{}, false
		}
		return spans[len(spans)-1], true
	}
	first, ok := last()
	Expect(ok).To(BeTrue(), "%s has acted", leader.name)
	steady := func() error {
		for _, s := range r.history().Spans() {
			if s.Who != leader.name && !s.Stopped {
				return fmt.Errorf("%s acts while %s leads", s.Process, leader.name)
			}
		}
		s, _ := last()
		switch {
		case s.Start != first.Start || s.Process != first.Process:
			return fmt.Errorf("%s's span changed: %s started at %s", leader.name, s.Process, s.Start)
		case s.Stopped && !s.Silent:
			return fmt.Errorf("%s stopped acting (it recorded a stop)", leader.name)
		}
		return nil
	}
	Consistently(ctx, steady).WithTimeout(d).WithPolling(20 * time.Millisecond).Should(Succeed())
	Eventually(ctx, func() error {
		if s, _ := last(); s.Silent {
			return fmt.Errorf("%s's heartbeats have been silent for %s", leader.name, time.Duration(witness.Now()-s.End))
		}
		return steady()
	}).WithTimeout(time.Second).WithPolling(5 * time.Millisecond).Should(Succeed())
}

// endOf returns when the process stopped acting, on the witness clock.
func (r *runner) endOf(process string) time.Duration {
	spans := r.history().Find(func(s harness.Span) bool { return s.Process == process })
	Expect(spans).To(HaveLen(1), "spans of process %s", process)
	return spans[0].End
}

// acquiredHow reads a candidate's last "Acquired lock" log line: whether it paid the acquisition grace, and
// whether it created the lock without ever having seen it held.
func acquiredHow(out string) (gracePaid, unseen bool) {
	i := strings.LastIndex(out, `"msg":"Acquired lock"`)
	if i < 0 {
		return false, false
	}
	line, _, _ := strings.Cut(out[i:], "\n")
	return !strings.Contains(line, `"grace":0,`), strings.Contains(line, `"reason":"lock absent","previousHolder":""`)
}

func faultOf(k kind) FaultKind {
	switch k {
	case cutLatency:
		return Latency
	case cutBlackhole:
		return Blackhole
	}
	return Reset
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
