package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	"github.com/lifelock/lifelock/pkg/lifelock"
	"github.com/lifelock/lifelock/test/harness"
	"github.com/lifelock/lifelock/test/harness/witness"
)

// impl is an election implementation under test.
type impl string

const (
	life  impl = "life"  // lifelock through manageropts
	lease impl = "lease" // controller-runtime's Lease election, defaults
	oplib impl = "oplib" // operator-lib's leader.Become
)

var allImpls = []impl{life, lease, oplib}

func (i impl) title() string {
	switch i {
	case life:
		return "lifelock life mode"
	case lease:
		return "controller-runtime Lease"
	default:
		return "operator-lib Become"
	}
}

// joined says whether a candidate's output shows it has joined the election: it has made its first attempt
// and is now leader or follower.
func (i impl) joined(output string) bool {
	if i == oplib {
		return strings.Contains(output, "Not the leader. Waiting.") || strings.Contains(output, "Became the leader.")
	}
	return strings.Contains(output, "Attempting to acquire leader lease")
}

// scenario is a way the leader goes away.
type scenario string

const (
	// crash: the leader's process is killed, kubelet writes its container terminated, then the Pod is
	// deleted (graceful delete request, then kubelet's final delete). Measured from the delete request.
	crash scenario = "crash"
	// handoff is a rolling update's step: the Pod's delete request, SIGTERM to the leader, its exit, its
	// container written terminated, the final delete. Measured from the delete request.
	handoff scenario = "hand-off"
)

var allScenarios = []scenario{crash, handoff}

// candidate is one replica: a Pod object and the process playing its container.
type candidate struct {
	pod  *corev1.Pod
	proc *harness.Process
}

// group is a set of candidates for one lock, with the witness records of when each acted.
type group struct {
	b          *bench
	impl       impl
	ns, lock   string
	witnessDir string
	witness    *harness.WitnessReader
	cands      map[string]*candidate // by Pod name
	started    int
	args       []string // more arguments for the candidates
}

func (b *bench) newGroup(impl impl, ns, lock string) (*group, error) {
	dir := filepath.Join(b.workDir, ns+"-"+lock)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &group{b: b, impl: impl, ns: ns, lock: lock, witnessDir: dir, witness: harness.NewWitnessReader(dir), cands: map[string]*candidate{}}, nil
}

// add starts n candidates at once and waits until every one has joined the election.
func (g *group) add(ctx context.Context, n int) error {
	var started []*candidate
	for range n {
		g.started++
		name := fmt.Sprintf("%s-%d", g.lock, g.started)
		pod, err := g.b.cp.CreatePendingPod(ctx, g.ns, name, g.b.nodes[g.started%len(g.b.nodes)])
		if err != nil {
			return err
		}
		env := append(os.Environ(), "KUBECONFIG="+g.b.cp.Kubeconfig, witness.DirEnv+"="+g.witnessDir)
		args := append([]string{"-impl=" + string(g.impl), "-lock=" + g.lock}, g.args...)
		if g.b.cfg.profile != "" {
			args = append(args, "-cpu-profile-dir="+g.b.cfg.profile, "-cpu-profile-slice="+profileSlice.String())
		}
		proc, err := g.b.cp.StartContainer(ctx, pod, env, g.b.candidateBin, args...)
		if err != nil {
			return err
		}
		c := &candidate{pod: proc.Pod, proc: proc}
		g.cands[name] = c
		started = append(started, c)
	}
	for _, c := range started {
		err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
			select {
			case <-c.proc.Done():
				return false, fmt.Errorf("candidate %s exited (code %d):\n%s", c.pod.Name, c.proc.ExitCode(), tail(c.proc.Output()))
			default:
			}
			return g.impl.joined(c.proc.Output()), nil
		})
		if err != nil {
			return fmt.Errorf("waiting for %s to join the election: %w; its output:\n%s", c.pod.Name, err, tail(c.proc.Output()))
		}
	}
	return nil
}

// leader waits until exactly one candidate acts and returns it.
func (g *group) leader(ctx context.Context) (*candidate, error) {
	var span harness.Span
	var acting int
	err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		h, err := g.witness.Read()
		if err != nil {
			return false, err
		}
		acting = 0
		for _, s := range h.Spans() {
			if !s.Stopped {
				acting, span = acting+1, s
			}
		}
		return acting == 1, nil
	})
	if err != nil {
		return nil, fmt.Errorf("waiting for exactly one leader of %s/%s (%d acting): %w", g.ns, g.lock, acting, err)
	}
	c := g.cands[span.Who]
	if c == nil {
		return nil, fmt.Errorf("%s acts for %s/%s but is not a running candidate", span.Who, g.ns, g.lock)
	}
	return c, nil
}

// firstActionAfter waits for the first acting span that starts after t0 and returns it.
func (g *group) firstActionAfter(ctx context.Context, t0 time.Duration, timeout time.Duration) (harness.Span, error) {
	var next harness.Span
	err := wait.PollUntilContextTimeout(ctx, 2*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		h, err := g.witness.Read()
		if err != nil {
			return false, err
		}
		found := false
		for _, s := range h.Spans() {
			if s.Start > t0 && (!found || s.Start < next.Start) {
				next, found = s, true
			}
		}
		return found, nil
	})
	return next, err
}

// failover makes the leader go away as sc says, measures the time from the Pod's delete request to the
// next leader's first action, and starts a new candidate in the old one's place.
func (g *group) failover(ctx context.Context, sc scenario) (sample, error) {
	old, err := g.leader(ctx)
	if err != nil {
		return sample{}, err
	}
	cp, pod := g.b.cp, old.pod
	var tl *lockTimeline
	var load0 apiserverLoad
	if g.b.cfg.trace && g.impl == life {
		if tl, err = watchLockTimeline(ctx, cp, g.ns, g.lock); err != nil {
			return sample{}, err
		}
		defer tl.stop()
		if load0, err = readAPIServerLoad(ctx, cp); err != nil {
			return sample{}, err
		}
		load0.candidates = g.candidatesCPU(pod.Name)
	}
	deleteRequest := func() error {
		return cp.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(pod.UID))})
	}
	var t0, terminal time.Duration
	switch sc {
	case crash:
		old.proc.Kill()
		<-old.proc.Done()
		t0 = witness.Now()
		if err := deleteRequest(); err != nil {
			return sample{}, err
		}
		if err := cp.TerminatePod(ctx, pod, 137); err != nil { // as a real kubelet: then the final delete
			return sample{}, err
		}
		terminal = witness.Now()
	case handoff:
		t0 = witness.Now()
		if err := deleteRequest(); err != nil {
			return sample{}, err
		}
		if err := old.proc.Signal(syscall.SIGTERM); err != nil {
			return sample{}, err
		}
		select {
		case <-old.proc.Done():
		case <-time.After(time.Minute):
			old.proc.Kill()
			return sample{}, fmt.Errorf("%s did not exit within a minute of SIGTERM:\n%s", pod.Name, tail(old.proc.Output()))
		}
		if err := cp.TerminatePod(ctx, pod, 0); err != nil {
			return sample{}, err
		}
		terminal = witness.Now()
	}
	if err := cp.ForceDeletePod(ctx, pod); err != nil { // kubelet's final delete
		return sample{}, err
	}
	podGone := witness.Now()
	delete(g.cands, pod.Name)
	next, err := g.firstActionAfter(ctx, t0, 2*time.Minute)
	if err != nil {
		return sample{}, fmt.Errorf("waiting for a leader of %s/%s after %s of %s: %w", g.ns, g.lock, sc, pod.Name, err)
	}
	if tl != nil {
		g.b.logf("trace N=%d %s: Pod terminal %s ms, gone %s ms; %s; %s acts %s ms", len(g.cands)+1, sc, ms(terminal-t0), ms(podGone-t0), tl.since(t0), next.Who, ms(next.Start-t0))
		load1, err := readAPIServerLoad(ctx, cp)
		if err != nil {
			return sample{}, err
		}
		load1.candidates = g.candidatesCPU(pod.Name)
		g.b.logf("trace: from before the disruption to the next leader acting, kube-apiserver used %.0f ms CPU for %s; the candidates %.0f ms",
			(load1.cpu-load0.cpu)*1000, load1.requests.minus(load0.requests).top(6), (load1.candidates-load0.candidates)*1000)
		if evs, err := cp.Client.CoreV1().Events(g.ns).List(ctx, metav1.ListOptions{}); err == nil {
			by := map[string]int{}
			for _, e := range evs.Items {
				by[e.Source.Component+"/"+e.Reason+"/"+e.InvolvedObject.Kind]++
			}
			g.b.logf("trace: events so far in %s: %v", g.ns, by)
		}
	}
	if err := g.add(ctx, 1); err != nil {
		return sample{}, err
	}
	return sample{Latency: next.Start - t0, From: pod.Name, To: next.Who}, nil
}

// stop kills every candidate and returns how many pairs of acting intervals overlapped (0, or 1 if any).
func (g *group) stop() (overlaps int, err error) {
	for _, c := range g.cands {
		c.proc.Kill()
	}
	for _, c := range g.cands {
		<-c.proc.Done()
	}
	h, err := g.witness.Read()
	if err != nil {
		return 0, err
	}
	if h.Check() != nil {
		return 1, nil
	}
	return 0, nil
}

func tail(s string) string {
	const keep = 4096
	if len(s) > keep {
		return "..." + s[len(s)-keep:]
	}
	return s
}

// lockTimeline records, on the witness clock, each change of a Lease lock a watch shows.
type lockTimeline struct {
	mu     sync.Mutex
	events []string
	at     []time.Duration
	w      watch.Interface
	done   chan struct{}
}

// watchLockTimeline starts recording the changes of the Lease ns/name.
func watchLockTimeline(ctx context.Context, cp *harness.ControlPlane, ns, name string) (*lockTimeline, error) {
	cur, err := cp.Client.CoordinationV1().Leases(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	w, err := cp.Client.CoordinationV1().Leases(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name, ResourceVersion: cur.ResourceVersion})
	if err != nil {
		return nil, err
	}
	tl := &lockTimeline{w: w, done: make(chan struct{})}
	go func() {
		defer close(tl.done)
		for ev := range w.ResultChan() {
			now := witness.Now()
			l, ok := ev.Object.(*coordinationv1.Lease)
			if !ok {
				continue
			}
			what := strings.ToLower(string(ev.Type))
			if ev.Type != watch.Deleted {
				what += " by " + strings.SplitN(ptr.Deref(l.Spec.HolderIdentity, ""), "_", 2)[0]
				if l.Annotations[lifelock.SettledAnnotation] == "true" {
					what += " (settled)"
				}
			}
			tl.mu.Lock()
			tl.events, tl.at = append(tl.events, what), append(tl.at, now)
			tl.mu.Unlock()
		}
	}()
	return tl, nil
}

// since lists the recorded changes with their times after t0.
func (tl *lockTimeline) since(t0 time.Duration) string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	var parts []string
	for i, e := range tl.events {
		parts = append(parts, fmt.Sprintf("lock %s %s ms", e, ms(tl.at[i]-t0)))
	}
	return strings.Join(parts, "; ")
}

func (tl *lockTimeline) stop() {
	tl.w.Stop()
	<-tl.done
}

// apiserverLoad is kube-apiserver's CPU time so far and the requests it served, and the CPU time the
// candidates that stay have used (in seconds).
type apiserverLoad struct {
	cpu        float64
	requests   requestCounts
	candidates float64
}

// candidatesCPU is the CPU time, in seconds, the group's candidate processes but except have used.
func (g *group) candidatesCPU(except string) float64 {
	var sum float64
	for name, c := range g.cands {
		if name == except {
			continue
		}
		if st, err := readProcStat(c.proc.Pid()); err == nil {
			sum += st.CPUSeconds
		}
	}
	return sum
}

func readAPIServerLoad(ctx context.Context, cp *harness.ControlPlane) (apiserverLoad, error) {
	pid, err := cp.APIServerPID()
	if err != nil {
		return apiserverLoad{}, err
	}
	st, err := readProcStat(pid)
	if err != nil {
		return apiserverLoad{}, err
	}
	m, err := scrapeMetrics(ctx, cp.Client)
	if err != nil {
		return apiserverLoad{}, err
	}
	return apiserverLoad{cpu: st.CPUSeconds, requests: m.Requests}, nil
}
