package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

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
		proc, err := g.b.cp.StartContainer(ctx, pod, env, g.b.candidateBin, append([]string{"-impl=" + string(g.impl), "-lock=" + g.lock}, g.args...)...)
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
	deleteRequest := func() error {
		return cp.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(pod.UID))})
	}
	var t0 time.Duration
	switch sc {
	case crash:
		old.proc.Kill()
		<-old.proc.Done()
		if err := cp.TerminateContainers(ctx, pod, 137); err != nil {
			return sample{}, err
		}
		t0 = witness.Now()
		if err := deleteRequest(); err != nil {
			return sample{}, err
		}
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
		if err := cp.TerminateContainers(ctx, pod, 0); err != nil {
			return sample{}, err
		}
	}
	if err := cp.ForceDeletePod(ctx, pod); err != nil { // kubelet's final delete
		return sample{}, err
	}
	delete(g.cands, pod.Name)
	next, err := g.firstActionAfter(ctx, t0, 2*time.Minute)
	if err != nil {
		return sample{}, fmt.Errorf("waiting for a leader of %s/%s after %s of %s: %w", g.ns, g.lock, sc, pod.Name, err)
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
