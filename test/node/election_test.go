package node

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	"github.com/lifelock/lifelock/test/harness"
	"github.com/lifelock/lifelock/test/harness/witness"
)

const (
	// managerImage is examples/manager with the witness recorder, as a static binary.
	managerImage = "lifelock.local/example-manager:test"
	// deafImage is the same binary in an image whose stop signal is SIGWINCH, which the manager ignores: the
	// kubelet's stop does not reach it, and it runs until the SIGKILL at terminationGracePeriodSeconds.
	deafImage = "lifelock.local/example-manager:deaf"
	// lockName is the example's LeaderElectionID, the Lease its Pods elect with.
	lockName = "lifelock-example"
)

// election is the example manager's Pods on the real node and what the test observes of them.
type election struct {
	t              *testing.T
	ctx            context.Context
	c              *cluster
	ns             string
	serviceAccount string // the example's ServiceAccount in ns (applyExampleRBAC)
	witnessDir     string
	kubeDir        string
	witness        *harness.WitnessReader
	pods           *podLog
	results        []result
}

// result is what one scenario measured, every time relative to the action (t0) on CLOCK_MONOTONIC.
type result struct {
	scenario, leader, next   string
	oldProcess, nextProcess  string        // the witness records (<pod>-<pid>) of the old and the next leader
	exit, actingEnd, nextRun time.Duration // the old container's process exit, its last acting, the next leader's first
	gone                     time.Duration // the old Pod's DELETED event (0: not deleted)
	stopLine                 bool          // the old leader recorded that it stopped (else it was killed)
	events                   []podEvent    // the old leader's Pod's watch events from t0 on
}

// TestElection runs the example manager, built with the witness recorder into an image, as real Pods on a
// real node, and fails its leader over in the ways a kubelet ends a container: graceful delete, the
// Eviction API, a process killed and restarted in its Pod, a force delete, and a leader deaf to the stop
// signal, killed at terminationGracePeriodSeconds. After every step the witness records of all containers
// are read as one history, which must show no two leaders acting at once.
func TestElection(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	requireNode(t)
	// Built first: a cold build of the static binary takes minutes, and the node would idle meanwhile.
	bin, err := harness.BuildExampleManagerWith(ctx, t.TempDir(), harness.StaticBuild)
	if err != nil {
		t.Fatal(err)
	}
	c := startCluster(ctx, t)
	cp, n, step := c.cp, c.n, c.step
	step("built the example manager")
	for _, img := range []Image{
		{Name: managerImage, Files: map[string]string{"manager": bin}, Entrypoint: []string{"/manager"}, User: "65532:65532"},
		{Name: deafImage, Files: map[string]string{"manager": bin}, Entrypoint: []string{"/manager"}, User: "65532:65532", StopSignal: "SIGWINCH"},
	} {
		tar := filepath.Join(c.dir, strings.NewReplacer("/", "_", ":", "_").Replace(img.Name)+".tar")
		if err := WriteImageOf(tar, img); err != nil {
			t.Fatal(err)
		}
		if err := n.ImportImage(ctx, tar, img.Name); err != nil {
			t.Fatal(err)
		}
	}
	step("built and imported the example manager's images")

	e := &election{t: t, ctx: ctx, c: c, witnessDir: filepath.Join(c.dir, "witness"), kubeDir: filepath.Join(c.dir, "kube")}
	if e.ns, err = cp.CreateNamespace(ctx, "election"); err != nil {
		t.Fatal(err)
	}
	if e.serviceAccount, err = applyExampleRBAC(ctx, cp.Client, e.ns); err != nil {
		t.Fatal(err)
	}
	// The Pods' credentials: a client certificate for the user a token of the ServiceAccount would
	// authenticate as, so RBAC grants them what the shipped Roles grant the ServiceAccount. Their API server
	// is the node's relay on the bridge to the test API server, which listens on loopback only.
	user := "system:serviceaccount:" + e.ns + ":" + e.serviceAccount
	kc, err := cp.AddUserKubeconfig(user, "system:serviceaccounts", "system:serviceaccounts:"+e.ns, "system:authenticated")
	if err != nil {
		t.Fatal(err)
	}
	api, err := url.Parse(cp.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	relay, err := n.Forward(ctx, api.Host)
	if err != nil {
		t.Fatal(err)
	}
	for dir, mode := range map[string]os.FileMode{e.witnessDir: 0o777, e.kubeDir: 0o755} {
		if err := os.Mkdir(dir, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, mode); err != nil { // past the umask: the containers run as 65532
			t.Fatal(err)
		}
	}
	if err := podKubeconfig(kc, filepath.Join(e.kubeDir, "kubeconfig"), relay); err != nil {
		t.Fatal(err)
	}
	e.witness = harness.NewWitnessReader(e.witnessDir)
	if e.pods, err = watchPods(ctx, cp.Client, e.ns); err != nil {
		t.Fatal(err)
	}

	// Three replicas: one leads, the others are Ready and wait.
	created := witness.Now()
	m1, m2, m3 := e.create("m1", managerImage, 10), e.create("m2", managerImage, 10), e.create("m3", managerImage, 10)
	e.waitReady(m1, m2, m3)
	leader := e.leader()
	step("three replicas Ready; %s leads, %s after the Pods were created; the Lease names %s",
		leader.Name, ms(e.spanOf(leader.Name).Start-created), e.holder())

	// Graceful delete of the leader: deletionTimestamp, SIGTERM from the kubelet, the release, the hand-off.
	r := e.failover("graceful delete", leader, true, func() error {
		return cp.Client.CoreV1().Pods(e.ns).Delete(ctx, leader.Name, metav1.DeleteOptions{})
	})
	e.checkGracefulOrder(r, leader)
	e.comparePlayed(r)
	leader = e.podNamed(r.next)
	e.waitReady(e.create("m4", managerImage, 10))

	// The Eviction API: a DisruptionTarget condition, then a graceful delete.
	r = e.failover("eviction", leader, true, func() error {
		return cp.Client.PolicyV1().Evictions(e.ns).Evict(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: leader.Name, Namespace: e.ns}})
	})
	e.checkGracefulOrder(r, leader)
	leader = e.podNamed(r.next)
	e.waitReady(e.create("m5", managerImage, 10))

	// The leader's process dies (SIGKILL from outside); the kubelet restarts the container in the same Pod.
	pid := e.pidOf(leader.Name, "manager") // found before the clock starts
	r = e.failover("process killed, restarted in its Pod", leader, false, func() error {
		return syscall.Kill(pid, syscall.SIGKILL)
	})
	e.checkRestart(r, leader)
	leader = e.podNamed(r.next)

	// Force delete (grace 0) of the running leader: its object is gone at once while its container runs on
	// until the kubelet stops it.
	r = e.failover("force delete", leader, true, func() error {
		return cp.Client.CoreV1().Pods(e.ns).Delete(ctx, leader.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	})
	e.checkForceDelete(r)
	leader = e.podNamed(r.next)

	// Two containers of one Pod run the manager: one leads (the other is held off by the Pod's abstract
	// socket, in the network namespace they share); its process is killed, and the other container, or the
	// killed one restarted, leads next.
	e.deleteAll()
	step("all Pods deleted")
	pair := e.createWith("pair", managerImage, 10, 2)
	e.waitReady(pair)
	if got := e.leader(); got.Name != pair.Name {
		e.t.Fatalf("%s leads, want %s", got.Name, pair.Name)
	}
	pid = e.pidOfSpan(pair.Name)
	r = e.failover("two containers of one Pod: leading one killed", pair, false, func() error {
		return syscall.Kill(pid, syscall.SIGKILL)
	})
	if r.next != pair.Name {
		t.Errorf("%s: %s leads, want %s", r.scenario, r.next, pair.Name)
	}
	t.Logf("%s: after the kill: %s", r.scenario, describePod(e.podNamed(pair.Name)))

	// No POD_NAME (nor POD_UID) in the environment: the manager takes its Pod's name from the hostname, which
	// the kubelet sets to the Pod's name, and the lock must name that Pod with its UID.
	e.deleteAll()
	bare := e.createWithout("bare", "POD_NAME", "POD_UID")
	e.waitReady(bare)
	if got := e.leader(); got.Name != bare.Name {
		t.Fatalf("%s leads, want %s", got.Name, bare.Name)
	}
	if want := bare.Name + "_" + string(bare.UID); e.holder() != want {
		t.Errorf("without POD_NAME the lock names %q, want %q", e.holder(), want)
	}
	step("without POD_NAME: %s leads, the lock names %s", bare.Name, e.holder())

	// A leader deaf to the stop signal: delete every Pod, start one deaf replica (it leads) and a follower,
	// then delete the deaf leader with terminationGracePeriodSeconds 3.
	e.deleteAll()
	step("all Pods deleted")
	deaf := e.create("deaf", deafImage, 3)
	e.waitReady(deaf)
	if got := e.leader(); got.Name != deaf.Name {
		t.Fatalf("%s leads, want %s", got.Name, deaf.Name)
	}
	e.waitReady(e.create("m6", managerImage, 10))
	r = e.failover("deaf leader, SIGKILL at grace 3 s", deaf, true, func() error {
		return cp.Client.CoreV1().Pods(e.ns).Delete(ctx, deaf.Name, metav1.DeleteOptions{})
	})
	e.checkDeaf(r, deaf)
	leader = e.podNamed(r.next)

	// The kubelet stops (a node lost): the lock stays with the leader, whose container still runs. Then the
	// administrator's out-of-service taint and the Pod GC end the leader's Pod.
	e.nodeLost(leader)

	e.report()
	c.stop()
}

// nodeLost stops the kubelet under the leader and a follower. The Node is then written NotReady (the node
// lifecycle controller's part: the test's kube-controller-manager does not run it), and the lock must stay
// with the leader, which still runs and acts, for as long as its Pod exists. Then the leader's Pod is
// deleted and the Node tainted node.kubernetes.io/out-of-service, what an administrator does for a node that
// is shut down; the Pod GC writes the terminating Pod Failed and deletes it, and the follower takes over.
// The node is not really shut down: the old leader's container still runs, and must stop acting by itself.
func (e *election) nodeLost(leader *corev1.Pod) {
	e.t.Helper()
	cp := e.c.cp
	follower := e.create("m7", managerImage, 10)
	e.waitReady(follower)
	holder := e.holder()
	if err := e.c.n.StopKubelet(); err != nil {
		e.t.Fatal(err)
	}
	if err := cp.SetNodeReady(e.ctx, e.c.n.Name, false); err != nil {
		e.t.Fatal(err)
	}
	e.c.step("kubelet stopped, Node %s written NotReady", e.c.n.Name)
	// For 5 s the leader still acts and holds the lock; the follower does not act.
	deadline := time.Now().Add(5 * time.Second)
	e.until(6*time.Second, func() bool {
		acting := e.history().Acting()
		if len(acting) != 1 || acting[0] != leader.Name {
			e.t.Fatalf("with the kubelet stopped, acting: %v, want only %s", acting, leader.Name)
		}
		if h := e.holder(); h != holder {
			e.t.Fatalf("with the kubelet stopped, the lock moved from %s to %s", holder, h)
		}
		return time.Now().After(deadline)
	})
	e.c.step("for 5 s with the kubelet stopped, %s kept the lock and acted alone", leader.Name)

	r := e.failover("node lost: out-of-service taint, Pod GC", leader, true, func() error {
		if err := cp.Client.CoreV1().Pods(e.ns).Delete(e.ctx, leader.Name, metav1.DeleteOptions{}); err != nil {
			return err
		}
		return cp.TaintNode(e.ctx, e.c.n.Name, corev1.Taint{Key: "node.kubernetes.io/out-of-service", Value: "nodeshutdown", Effect: corev1.TaintEffectNoExecute})
	})
	if r.next != follower.Name {
		e.t.Errorf("%s: %s leads, want %s", r.scenario, r.next, follower.Name)
	}
	if r.actingEnd > r.nextRun {
		e.t.Errorf("%s: %s acted until %s, after %s started at %s", r.scenario, r.leader, ms(r.actingEnd), r.next, ms(r.nextRun))
	}
}

// containerEnv names the environment variable that tells the test which container a process is:
// <pod>/<container>.
const containerEnv = "LIFELOCK_TEST_CONTAINER"

// create creates a Pod of the example manager on the node.
func (e *election) create(name, image string, grace int64) *corev1.Pod {
	e.t.Helper()
	return e.createWith(name, image, grace, 1)
}

// createWith creates a Pod of the example manager on the node with n containers running it: manager,
// then manager-2 and so on, each with its probes on a port of its own (they share the Pod's network).
func (e *election) createWith(name, image string, grace int64, n int) *corev1.Pod {
	e.t.Helper()
	var containers []corev1.Container
	for i := range n {
		c := e.container(image)
		if i > 0 {
			port := int32(8081 + i)
			c.Name = fmt.Sprintf("manager-%d", i+1)
			c.Args[1] = fmt.Sprintf("--health-probe-bind-address=:%d", port)
			c.ReadinessProbe.HTTPGet.Port = intstr.FromInt32(port)
		}
		c.Env = append(c.Env, corev1.EnvVar{Name: containerEnv, Value: name + "/" + c.Name})
		containers = append(containers, c)
	}
	pod, err := e.c.cp.Client.CoreV1().Pods(e.ns).Create(e.ctx, e.podSpec(name, grace, containers), metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return pod
}

// podSpec is a Pod of the example manager's containers on the node.
func (e *election) podSpec(name string, grace int64, containers []corev1.Container) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/name": "lifelock-example"}},
		Spec: corev1.PodSpec{
			NodeName:                      e.c.n.Name, // there is no scheduler
			ServiceAccountName:            e.serviceAccount,
			AutomountServiceAccountToken:  ptr.To(false), // the kubeconfig carries the credentials
			TerminationGracePeriodSeconds: ptr.To(grace),
			// The host's PID namespace, so that a restarted container's process has a PID of its own: the
			// witness names its record <pod>-<pid>.log, and every container's first process would be PID 1.
			HostPID:         true,
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true)},
			Volumes: []corev1.Volume{
				{Name: "witness", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: e.witnessDir, Type: ptr.To(corev1.HostPathDirectory)}}},
				{Name: "kube", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: e.kubeDir, Type: ptr.To(corev1.HostPathDirectory)}}},
			},
			Containers: containers,
		},
	}
}

// createWithout creates a Pod of the example manager without the environment variables named.
func (e *election) createWithout(name string, without ...string) *corev1.Pod {
	e.t.Helper()
	c := e.container(managerImage)
	c.Env = slices.DeleteFunc(c.Env, func(v corev1.EnvVar) bool { return slices.Contains(without, v.Name) })
	c.Env = append(c.Env, corev1.EnvVar{Name: containerEnv, Value: name + "/" + c.Name})
	pod, err := e.c.cp.Client.CoreV1().Pods(e.ns).Create(e.ctx, e.podSpec(name, 10, []corev1.Container{c}), metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return pod
}

// container is the example manager's container, as examples/manager/deployment.yaml has it, with the
// witness directory and the kubeconfig mounted from the host.
func (e *election) container(image string) corev1.Container {
	env := []corev1.EnvVar{
		{Name: "KUBECONFIG", Value: "/kube/kubeconfig"},
		{Name: witness.DirEnv, Value: "/witness"},
	}
	for _, f := range [][2]string{{"POD_NAME", "metadata.name"}, {"POD_NAMESPACE", "metadata.namespace"}, {"POD_UID", "metadata.uid"}} {
		env = append(env, corev1.EnvVar{Name: f[0], ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: f[1]}}})
	}
	return corev1.Container{
		Name: "manager", Image: image, ImagePullPolicy: corev1.PullNever,
		Args: []string{"--leader-elect", "--health-probe-bind-address=:8081"},
		Env:  env,
		VolumeMounts: []corev1.VolumeMount{
			{Name: "witness", MountPath: "/witness"},
			{Name: "kube", MountPath: "/kube", ReadOnly: true},
		},
		// Followers are Ready too: the probe never depends on leading.
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromInt32(8081)}},
			PeriodSeconds: 1,
		},
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
	}
}

// waitReady waits until every pod is Running and Ready.
func (e *election) waitReady(pods ...*corev1.Pod) {
	e.t.Helper()
	for _, p := range pods {
		var last *corev1.Pod
		ok := e.until(2*time.Minute, func() bool {
			cur, err := e.c.cp.Client.CoreV1().Pods(e.ns).Get(e.ctx, p.Name, metav1.GetOptions{})
			if err != nil {
				return false
			}
			last = cur
			for _, c := range cur.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					return cur.Status.Phase == corev1.PodRunning
				}
			}
			return false
		})
		if !ok {
			state := "not found"
			if last != nil {
				state = describePod(last)
			}
			e.t.Fatalf("pod %s not Running and Ready within 2 minutes: %s", p.Name, state)
		}
	}
}

// until polls cond every 10 ms until it holds or timeout passes, checking the witness history each time.
func (e *election) until(timeout time.Duration, cond func() bool) bool {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		e.history()
		if cond() {
			return true
		}
		if time.Now().After(deadline) || e.ctx.Err() != nil {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// history reads the witness records as one history and fails the test at once if two leaders overlap.
func (e *election) history() *harness.History {
	e.t.Helper()
	h, err := e.witness.Read()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := h.Check(); err != nil {
		e.t.Fatalf("the witness history: %v", err)
	}
	return h
}

// leader waits until exactly one container acts and no other has for 1 s, and returns its Pod.
func (e *election) leader() *corev1.Pod {
	e.t.Helper()
	var who string
	var since time.Time
	ok := e.until(time.Minute, func() bool {
		acting := e.history().Acting()
		if len(acting) != 1 {
			who = ""
			return false
		}
		if acting[0] != who {
			who, since = acting[0], time.Now()
		}
		return time.Since(since) > time.Second
	})
	if !ok {
		e.t.Fatalf("no single leader within a minute: acting %v", e.history().Acting())
	}
	return e.podNamed(who)
}

func (e *election) podNamed(name string) *corev1.Pod {
	e.t.Helper()
	p, err := e.c.cp.Client.CoreV1().Pods(e.ns).Get(e.ctx, name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatalf("pod %s: %v", name, err)
	}
	return p
}

// spanOf returns the latest acting span of the Pod's containers.
func (e *election) spanOf(name string) harness.Span {
	e.t.Helper()
	spans := e.history().Find(func(s harness.Span) bool { return s.Who == name })
	if len(spans) == 0 {
		e.t.Fatalf("%s never acted", name)
	}
	return spans[len(spans)-1]
}

// holder returns the Lease's holderIdentity.
func (e *election) holder() string {
	e.t.Helper()
	var l *coordinationv1.Lease
	var err error
	if l, err = e.c.cp.Client.CoordinationV1().Leases(e.ns).Get(e.ctx, lockName, metav1.GetOptions{}); err != nil {
		e.t.Fatalf("the lock: %v", err)
	}
	return ptrValue(l.Spec.HolderIdentity)
}

// pidOf returns the PID of the manager process of a container of a Pod on this machine, waiting until
// there is exactly one.
func (e *election) pidOf(pod, container string) int {
	e.t.Helper()
	var pids []int
	if !e.until(30*time.Second, func() bool {
		pids = processesWith("/manager", containerEnv+"="+pod+"/"+container)
		return len(pids) == 1
	}) {
		e.t.Fatalf("manager processes of %s/%s: %v, want one", pod, container, pids)
	}
	return pids[0]
}

// pidOfSpan returns the PID of the Pod's process that acts now, from the name of its witness record.
func (e *election) pidOfSpan(pod string) int {
	e.t.Helper()
	span := e.spanOf(pod)
	pid, err := strconv.Atoi(strings.TrimPrefix(span.Process, pod+"-"))
	if err != nil || span.Stopped {
		e.t.Fatalf("%s: no acting process (record %s, stopped %v)", pod, span.Process, span.Stopped)
	}
	return pid
}

// processesWith finds the processes of this machine running program (argv[0]) with env (NAME=value) in
// their environment.
func processesWith(program, env string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if !bytes.HasPrefix(cmdline, []byte(program+"\x00")) {
			continue
		}
		environ, _ := os.ReadFile(filepath.Join("/proc", ent.Name(), "environ"))
		if bytes.Contains(append([]byte{0}, environ...), []byte("\x00"+env+"\x00")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// exitOf reports, on CLOCK_MONOTONIC, when the process exits (a pidfd becomes readable then).
func exitOf(ctx context.Context, pid int) (<-chan time.Duration, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	ch := make(chan time.Duration, 1)
	go func() {
		defer func() { _ = unix.Close(fd) }()
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for ctx.Err() == nil {
			if n, err := unix.Poll(fds, 100); n > 0 || (err != nil && err != unix.EINTR) {
				ch <- witness.Now()
				return
			}
		}
	}()
	return ch, nil
}

// failover runs action against the leader and measures: when its container's process exits, when it last
// acts, when the next leader (another Pod, or the same Pod's restarted container) first acts, and when the
// Pod object is gone. It logs the leader Pod's watch events from the action on.
func (e *election) failover(scenario string, leader *corev1.Pod, deleted bool, action func() error) result {
	e.t.Helper()
	// The leading process: its witness record is named <pod>-<pid>.log, and the Pods share the host's PID
	// namespace.
	old := e.spanOf(leader.Name)
	pid, err := strconv.Atoi(strings.TrimPrefix(old.Process, leader.Name+"-"))
	if err != nil {
		e.t.Fatalf("the witness record %s does not name a PID: %v", old.Process, err)
	}
	exited, err := exitOf(e.ctx, pid)
	if err != nil {
		e.t.Fatal(err)
	}
	t0 := witness.Now()
	if err := action(); err != nil {
		e.t.Fatalf("%s of %s: %v", scenario, leader.Name, err)
	}
	r := result{scenario: scenario, leader: leader.Name}

	var next harness.Span
	if !e.until(time.Minute, func() bool {
		spans := e.history().Find(func(s harness.Span) bool { return s.Start >= t0 })
		if len(spans) > 0 {
			next = spans[0]
		}
		return len(spans) > 0
	}) {
		e.t.Fatalf("%s: no leader acted within a minute of the action", scenario)
	}
	r.next, r.nextRun, r.nextProcess = next.Who, next.Start-t0, next.Process
	select {
	case at := <-exited:
		r.exit = at - t0
	case <-time.After(time.Minute):
		e.t.Fatalf("%s: %s's process %d still runs a minute after the action", scenario, leader.Name, pid)
	}
	// The old leader's span, now complete: it recorded a stop, or it has been silent long enough.
	if !e.until(10*time.Second, func() bool {
		for _, s := range e.history().Spans() {
			if s.Process == old.Process && s.Start == old.Start {
				old = s
				return s.Stopped
			}
		}
		return false
	}) {
		e.t.Fatalf("%s: %s's span %s never ended", scenario, leader.Name, old.Process)
	}
	r.actingEnd, r.oldProcess = old.End-t0, old.Process
	stop, err := os.ReadFile(filepath.Join(e.witnessDir, old.Process+".log"))
	r.stopLine = err == nil && bytes.Contains(stop, []byte(" stop\n"))

	evs := e.pods.of(leader.UID, t0)
	if deleted {
		evs = e.waitGone(leader, t0)
		r.gone = evs[len(evs)-1].At - t0
	}
	r.events = evs
	for _, ev := range evs {
		e.t.Logf("  %s %+8.1f ms  %-8s %s", leader.Name, float64(ev.At-t0)/1e6, ev.Type, ev.State)
	}
	e.t.Logf("%s of %s (process %s): its process exited at %s, it last acted at %s (stop recorded: %v), %s (process %s) acted at %s, the Pod was gone at %s",
		scenario, leader.Name, r.oldProcess, ms(r.exit), ms(r.actingEnd), r.stopLine, r.next, r.nextProcess, ms(r.nextRun), ms(r.gone))
	e.results = append(e.results, r)
	return r
}

// waitGone waits until the Pod's DELETED event arrived and returns the events of the Pod from t0 on.
func (e *election) waitGone(pod *corev1.Pod, t0 time.Duration) []podEvent {
	e.t.Helper()
	var evs []podEvent
	if !e.until(time.Minute, func() bool {
		evs = e.pods.of(pod.UID, t0)
		return len(evs) > 0 && evs[len(evs)-1].Type == watch.Deleted
	}) {
		e.t.Fatalf("pod %s not gone within a minute", pod.Name)
	}
	return evs
}

// checkGracefulOrder checks what the lock relies on in a graceful delete: the Pod object disappears only
// after a status with every container terminated was written, and after the process exited; and that the
// next leader is another Pod.
func (e *election) checkGracefulOrder(r result, pod *corev1.Pod) {
	e.t.Helper()
	e.checkContract(r, r.events)
	if r.next == pod.Name {
		e.t.Errorf("%s: %s acted again after its delete", r.scenario, pod.Name)
	}
	if !r.stopLine {
		e.t.Errorf("%s: %s recorded no stop: its SIGTERM did not reach it", r.scenario, pod.Name)
	}
}

// checkContract checks the kubelet's side of the contract from the watch events of a deleted Pod: a status
// with all containers terminated came before the DELETED event, and so did the process's exit. It logs the
// order of the kubelet's writes, the played kubelet's subject.
func (e *election) checkContract(r result, evs []podEvent) {
	e.t.Helper()
	terminatedAt, terminalAt, deletedAt := -1, -1, -1
	for i, ev := range evs {
		if ev.Type == watch.Deleted {
			deletedAt = i
			break
		}
		if terminatedAt < 0 && allTerminated(ev.Pod) {
			terminatedAt = i
		}
		if terminalAt < 0 && terminal(ev.Pod) {
			terminalAt = i
		}
	}
	switch {
	case deletedAt < 0:
		e.t.Errorf("%s: no DELETED event", r.scenario)
	case terminatedAt < 0 || terminatedAt > deletedAt:
		e.t.Errorf("%s: the Pod was deleted without a status showing its containers terminated", r.scenario)
	case r.exit > r.gone:
		e.t.Errorf("%s: the Pod was gone at %s, before its process exited at %s", r.scenario, ms(r.gone), ms(r.exit))
	}
	if terminatedAt >= 0 {
		e.t.Logf("%s: containers first written terminated with phase %s; terminal phase written before the delete: %v",
			r.scenario, evs[terminatedAt].Pod.Status.Phase, terminalAt >= 0 && terminalAt < deletedAt)
	}
}

// checkRestart checks that a container killed in place came back in the same Pod and led again, since no
// one else may take the lock of a Pod that lives.
func (e *election) checkRestart(r result, pod *corev1.Pod) {
	e.t.Helper()
	if r.next != pod.Name {
		e.t.Errorf("%s: %s took over from %s, whose Pod still exists", r.scenario, r.next, pod.Name)
	}
	p := e.podNamed(pod.Name)
	if len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].RestartCount != 1 {
		e.t.Errorf("%s: after the kill: %s", r.scenario, describePod(p))
	}
}

// checkForceDelete: the object is gone at once, the container runs on until the kubelet stops it; the
// witness history (checked all along) shows the old leader stopped acting before the next one started.
func (e *election) checkForceDelete(r result) {
	e.t.Helper()
	if r.actingEnd > r.nextRun {
		e.t.Errorf("%s: %s acted until %s, after %s started at %s", r.scenario, r.leader, ms(r.actingEnd), r.next, ms(r.nextRun))
	}
}

// checkDeaf: the deaf leader is killed at its grace, acts until then, and the follower takes over only once
// the kubelet wrote its container terminated.
func (e *election) checkDeaf(r result, pod *corev1.Pod) {
	e.t.Helper()
	e.checkContract(r, r.events)
	if r.stopLine {
		e.t.Errorf("%s: %s recorded a stop: it heard the stop signal", r.scenario, pod.Name)
	}
	if r.exit < 3*time.Second {
		e.t.Errorf("%s: %s exited at %s, before its 3 s grace", r.scenario, pod.Name, ms(r.exit))
	}
}

// deleteAll deletes every Pod of the namespace gracefully and waits until they are gone.
func (e *election) deleteAll() {
	e.t.Helper()
	pods := e.c.cp.Client.CoreV1().Pods(e.ns)
	if err := pods.DeleteCollection(e.ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		e.t.Fatal(err)
	}
	if !e.until(2*time.Minute, func() bool {
		l, err := pods.List(e.ctx, metav1.ListOptions{})
		return err == nil && len(l.Items) == 0
	}) {
		e.t.Fatal("pods not gone within 2 minutes of their deletion")
	}
	if !e.until(10*time.Second, func() bool { return len(e.history().Acting()) == 0 }) {
		e.t.Fatalf("still acting with every Pod gone: %v", e.history().Acting())
	}
	// The lock is free: released by the last leader (a released Lease stays, with no holder and no owner),
	// or deleted by the garbage collector with its holder's Pod.
	var lease *coordinationv1.Lease
	if !e.until(30*time.Second, func() bool {
		l, err := e.c.cp.Client.CoordinationV1().Leases(e.ns).Get(e.ctx, lockName, metav1.GetOptions{})
		lease = l
		return apierrors.IsNotFound(err) || (err == nil && ptrValue(l.Spec.HolderIdentity) == "" && len(l.OwnerReferences) == 0)
	}) {
		e.t.Errorf("the lock is not free 30 s after every Pod is gone: holder %q, owners %v", ptrValue(lease.Spec.HolderIdentity), lease.OwnerReferences)
	}
}

// report logs the scenarios' figures as a table.
func (e *election) report() {
	var b strings.Builder
	fmt.Fprintf(&b, "%-38s %-6s %10s %10s %10s %10s  %s\n", "scenario", "leader", "exit", "acted til", "next acts", "Pod gone", "next leader")
	for _, r := range e.results {
		fmt.Fprintf(&b, "%-38s %-6s %10s %10s %10s %10s  %s\n", r.scenario, r.leader, ms(r.exit), ms(r.actingEnd), ms(r.nextRun), ms(r.gone), r.next)
	}
	e.t.Logf("failovers, times from the action (ms):\n%s", b.String())
}

func ms(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) + " ms" }

// comparePlayed plays the graceful delete the way the other suites do (test/harness's kubelet, on a Node
// of its own that no kubelet runs) and compares the order of the writes with the real kubelet's in r:
// harness.DeletePodAsKubelet (which DeletePodGracefully calls with exit code 0) must match it.
func (e *election) comparePlayed(r result) {
	e.t.Helper()
	kubelet := milestones(r.events)
	cp := e.c.cp
	const node = "played-node"
	if err := cp.EnsureNode(e.ctx, node); err != nil {
		e.t.Fatal(err)
	}
	for _, played := range []struct {
		name string
		del  func(*corev1.Pod) error
		same bool
	}{
		{"DeletePodAsKubelet", func(p *corev1.Pod) error { return cp.DeletePodAsKubelet(e.ctx, p, 0) }, true},
	} {
		pod, err := cp.CreatePod(e.ctx, e.ns, "played-"+strings.ToLower(played.name), node)
		if err != nil {
			e.t.Fatal(err)
		}
		// From the status the played kubelet wrote on, as from the real Pod's delete request.
		if !e.until(10*time.Second, func() bool {
			return slices.ContainsFunc(e.pods.of(pod.UID, 0), func(ev podEvent) bool { return ev.Pod.ResourceVersion == pod.ResourceVersion })
		}) {
			e.t.Fatalf("the watch did not show pod %s Running", pod.Name)
		}
		t0 := witness.Now()
		if err := played.del(pod); err != nil {
			e.t.Fatal(err)
		}
		got := milestones(e.waitGone(pod, t0))
		same := slices.Equal(got, kubelet)
		e.t.Logf("the played kubelet's %s: %v; the real kubelet: %v; the same: %v", played.name, got, kubelet, same)
		if played.same && !same {
			e.t.Errorf("harness.%s does not write what the real kubelet writes: %v, want %v", played.name, got, kubelet)
		}
	}
	if err := cp.Client.CoreV1().Nodes().Delete(e.ctx, node, metav1.DeleteOptions{}); err != nil {
		e.t.Error(err)
	}
}

// milestones reduces the watch events of a Pod's deletion to what the lock judges by, without repeats:
// deletion requested, every container terminated, terminal phase, and the object gone.
func milestones(evs []podEvent) []string {
	var out []string
	for _, ev := range evs {
		m := "deleted"
		if ev.Type != watch.Deleted {
			var parts []string
			if ev.Pod.DeletionTimestamp != nil {
				parts = append(parts, "deleting")
			}
			if allTerminated(ev.Pod) {
				parts = append(parts, "terminated")
			} else {
				parts = append(parts, "running")
			}
			if terminal(ev.Pod) {
				parts = append(parts, string(ev.Pod.Status.Phase))
			}
			m = strings.Join(parts, "+")
		}
		if len(out) == 0 || out[len(out)-1] != m {
			out = append(out, m)
		}
	}
	return out
}
