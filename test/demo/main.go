// Command demo shows leader for life at work: three processes of examples/manager compete for one lock on
// a local control plane; the leader is killed, then the next one is stopped gracefully, and the demo prints
// who leads and how long each hand-over took. Run it from the repository root with `make demo`.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/lifelock/lifelock/test/harness"
)

const (
	lockName  = "lifelock-example" // examples/manager's LeaderElectionID
	configMap = "demo"             // the leader's controller stamps its Pod name on it
	timeout   = 30 * time.Second   // for a leader to emerge (and act) at each step
)

var start = time.Now()

// say prints one timeline line, stamped with the seconds since the demo started.
func say(format string, args ...any) {
	fmt.Printf("[%6.2fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	interrupted := ctx.Err() != nil
	stop()
	switch {
	case interrupted:
		fmt.Fprintln(os.Stderr, "demo interrupted; its processes are stopped and its files removed")
		os.Exit(130)
	case err != nil:
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

// candidate is one manager process and the Pod it plays.
type candidate struct {
	pod  *corev1.Pod
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited
}

// leader is a holder of the lock, and when the demo saw it appear in the Lease.
type leader struct {
	pod string
	at  time.Time
}

func run(ctx context.Context) (err error) {
	tmp, err := os.MkdirTemp("", "lifelock-demo-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }()

	say("Building examples/manager")
	if _, err := harness.BuildBinary(ctx, harness.RepoRoot(), "./examples/manager", tmp); err != nil {
		return fmt.Errorf("building examples/manager: %w", err)
	}

	say("Starting the control plane: etcd, kube-apiserver, kube-controller-manager (garbage collector)")
	cp, err := harness.Start(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if stopErr := cp.Stop(); stopErr != nil {
			err = errors.Join(err, fmt.Errorf("stopping the control plane: %w", stopErr))
		}
	}()
	ns, err := cp.CreateNamespace(ctx, "lifelock-demo")
	if err != nil {
		return err
	}
	if err := cp.EnsureNode(ctx, "node-1"); err != nil {
		return err
	}
	if _, err := cp.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
		Name: configMap, Labels: map[string]string{"lifelock.example/watched": "true"},
	}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	say("Control plane up: namespace %s, Node node-1, ConfigMap %s labelled lifelock.example/watched=true", ns, configMap)

	// An open watch holds up kube-apiserver's shutdown, so this one ends before the control plane stops.
	leaders, stopWatch := watchHolder(ctx, cp, ns)
	defer stopWatch()
	candidates := map[string]*candidate{}
	defer func() { // whatever happens, no process outlives the demo
		for _, c := range candidates {
			_ = c.cmd.Process.Kill()
			<-c.done
		}
		if err != nil && ctx.Err() == nil {
			tailLogs(tmp)
		}
	}()
	for i := 1; i <= 3; i++ {
		pod, err := cp.CreatePod(ctx, ns, fmt.Sprintf("manager-%d", i), "node-1")
		if err != nil {
			return err
		}
		c, err := startCandidate(tmp, cp.Kubeconfig, pod)
		if err != nil {
			return err
		}
		candidates[pod.Name] = c
		say("Started %s (pid %d) as Pod %s/%s", pod.Name, c.cmd.Process.Pid, ns, pod.Name)
	}

	started := time.Now()
	first, err := awaitLeader(ctx, cp, ns, leaders, "")
	if err != nil {
		return err
	}
	say("Election: %s leads, %d ms after the processes started; it acted only after the acquisition grace "+
		"(~1.1 s), since nobody saw how an earlier holder, if any, stopped", first.pod, first.at.Sub(started).Milliseconds())

	// 1. The leader crashes. The followers wait as long as its Pod exists; then kubelet deletes the Pod.
	if _, err := stopCandidate(ctx, cp, candidates[first.pod], syscall.SIGKILL, "Crash: SIGKILL %s; the followers wait while its Pod exists"); err != nil {
		return err
	}
	delete(candidates, first.pod)
	podGone := time.Now()
	second, err := awaitLeader(ctx, cp, ns, leaders, first.pod)
	if err != nil {
		return err
	}
	say("Failover: %s leads, %d ms after Pod %s was deleted", second.pod, second.at.Sub(podGone).Milliseconds(), first.pod)

	// 2. A rolling update stops the leader: it stops its controllers, releases the lock, and exits.
	sigterm, err := stopCandidate(ctx, cp, candidates[second.pod], syscall.SIGTERM, "Graceful stop: SIGTERM %s")
	if err != nil {
		return err
	}
	delete(candidates, second.pod)
	third, err := awaitLeader(ctx, cp, ns, leaders, second.pod)
	if err != nil {
		return err
	}
	say("Hand-off: %s leads, %d ms after the SIGTERM to %s", third.pod, third.at.Sub(sigterm).Milliseconds(), second.pod)

	say("Stopping: killing the last process, stopping the control plane, removing %s", tmp)
	return nil
}

// stopCandidate announces what (a format for the Pod's name), sends sig to c's process, waits for it to
// exit, and then plays kubelet: deletes its Pod gracefully. It returns when it sent sig. It first pauses
// for a second, so that the candidates that lost the last race (they back off for up to 2.2 retry periods)
// wait on their watches again, as they would in a cluster.
func stopCandidate(ctx context.Context, cp *harness.ControlPlane, c *candidate, sig syscall.Signal, what string) (time.Time, error) {
	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
		return time.Time{}, ctx.Err()
	}
	say(what, c.pod.Name)
	sent := time.Now()
	_ = c.cmd.Process.Signal(sig)
	select {
	case <-c.done:
		say("%s exited (%v)", c.pod.Name, c.cmd.ProcessState)
	case <-time.After(timeout):
		return sent, fmt.Errorf("%s did not exit within %s of %v", c.pod.Name, timeout, sig)
	case <-ctx.Done():
		return sent, ctx.Err()
	}
	if err := cp.DeletePodGracefully(ctx, c.pod); err != nil {
		return sent, err
	}
	say("Kubelet's part: deleted Pod %s gracefully (containers written terminated, then the grace-0 delete)", c.pod.Name)
	return sent, nil
}

// startCandidate runs examples/manager as the process of pod, logging to a file in dir.
func startCandidate(dir, kubeconfig string, pod *corev1.Pod) (*candidate, error) {
	c := &candidate{pod: pod, done: make(chan struct{})}
	logFile, err := os.Create(filepath.Join(dir, pod.Name+".log"))
	if err != nil {
		return nil, err
	}
	c.cmd = exec.Command(filepath.Join(dir, "manager"), "--leader-elect", "--health-probe-bind-address=0")
	c.cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "POD_NAME="+pod.Name, "POD_NAMESPACE="+pod.Namespace)
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	// Its own process group: Ctrl-C in the terminal reaches only the demo, which then kills it.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", pod.Name, err)
	}
	go func() { _ = c.cmd.Wait(); _ = logFile.Close(); close(c.done) }()
	return c, nil
}

// watchHolder prints every change of the Lease's holder as the watch sees it, and sends each new holder
// (from spec.holderIdentity, "<pod name>_<pod uid>") on the channel. stop ends the watch and waits for it.
func watchHolder(ctx context.Context, cp *harness.ControlPlane, ns string) (leaders <-chan leader, stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	out, done := make(chan leader, 16), make(chan struct{})
	lw := cache.NewListWatchFromClient(cp.Client.CoordinationV1().RESTClient(), "leases", ns,
		fields.OneTermEqualSelector("metadata.name", lockName))
	inf := cache.NewSharedInformer(lw, &coordinationv1.Lease{}, 0)
	last := ""
	onChange := func(obj any) {
		holder := ""
		if l, ok := obj.(*coordinationv1.Lease); ok {
			holder, _, _ = strings.Cut(ptr.Deref(l.Spec.HolderIdentity, ""), "_")
		}
		if holder == last {
			return
		}
		last = holder
		switch {
		case obj == nil:
			say("  Lease %s: deleted by the garbage collector (its owner Pod is gone)", lockName)
		case holder == "":
			say("  Lease %s: released by its holder", lockName)
		default:
			say("  Lease %s: held by %s", lockName, holder)
			select {
			case out <- leader{pod: holder, at: time.Now()}:
			case <-ctx.Done():
			}
		}
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: onChange, UpdateFunc: func(_, obj any) { onChange(obj) }, DeleteFunc: func(any) { onChange(nil) },
	})
	go func() { inf.RunWithContext(ctx); close(done) }()
	return out, func() { cancel(); <-done }
}

// awaitLeader waits for a holder other than previous, then for its controller to stamp its name on the
// ConfigMap: the proof that it acts.
func awaitLeader(ctx context.Context, cp *harness.ControlPlane, ns string, leaders <-chan leader, previous string) (leader, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var l leader
	for l.pod == "" || l.pod == previous {
		select {
		case l = <-leaders:
		case <-ctx.Done():
			return l, fmt.Errorf("no new leader in Lease %s within %s: %w", lockName, timeout, ctx.Err())
		}
	}
	for {
		cm, err := cp.Client.CoreV1().ConfigMaps(ns).Get(ctx, configMap, metav1.GetOptions{})
		if err == nil && cm.Annotations["lifelock.example/handled-by"] == l.pod {
			say("  ConfigMap %s: lifelock.example/handled-by=%s, %d ms after it took the lock",
				configMap, l.pod, time.Since(l.at).Milliseconds())
			return l, nil
		}
		select {
		case <-ctx.Done():
			return l, fmt.Errorf("%s leads but did not stamp ConfigMap %s within %s: %w", l.pod, configMap, timeout, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// tailLogs prints the end of every manager's log, to explain a failure.
func tailLogs(dir string) {
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, name := range logs {
		b, _ := os.ReadFile(name)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		fmt.Fprintf(os.Stderr, "--- end of %s:\n%s\n", name, strings.Join(lines[max(0, len(lines)-10):], "\n"))
	}
}
