package node

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/lifelock/lifelock/test/harness"
)

// binEnv names the directory hack/build-node.sh prints; without it the test is skipped.
const binEnv = "LIFELOCK_NODE_BIN"

// ipForward is net.ipv4.ip_forward before the test.
var ipForward string

// imageName is the pause image's name; it is also the sandbox image.
const imageName = "lifelock.local/pause:1"

// TestNode starts a control plane and a real node, waits for the Node to be Ready, runs a Pod on it until it
// is Running with an IP, deletes it, stops everything and checks that nothing is left on the machine.
func TestNode(t *testing.T) {
	bin := os.Getenv(binEnv)
	if bin == "" {
		t.Skipf("%s is not set: run `make test-node` (or set it to what hack/build-node.sh prints)", binEnv)
	}
	if os.Geteuid() != 0 {
		t.Skip("a node needs root")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	started := time.Now()
	step := func(format string, args ...any) {
		t.Logf("[%5.1fs] "+format, append([]any{time.Since(started).Seconds()}, args...)...)
	}

	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	ipForward = strings.TrimSpace(string(b))

	dir := t.TempDir()
	for _, prog := range []string{"pause", "runc-noseccomp"} {
		build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, prog), "./"+prog)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v: %s", prog, err, out)
		}
	}
	pause := filepath.Join(dir, "pause")
	image := filepath.Join(dir, "pause.tar")
	if err := WriteImage(image, pause, imageName); err != nil {
		t.Fatal(err)
	}
	step("built the pause image %s", image)

	cp, err := harness.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := cp.Stop(); err != nil {
			t.Errorf("stopping the control plane: %v", err)
		}
	}()
	step("control plane up")
	// The kubelet's user: system:masters, since the test control plane authorises with RBAC only (no Node
	// authorizer) and grants system:nodes nothing.
	kubeconfig, err := cp.AddUserKubeconfig("system:node:lifelock", "system:nodes", "system:masters")
	if err != nil {
		t.Fatal(err)
	}

	n, err := Start(ctx, Options{Bin: bin, Kubeconfig: kubeconfig, Image: image, ImageName: imageName,
		Runc: filepath.Join(dir, "runc-noseccomp"), Logf: step})
	if err != nil {
		t.Fatalf("starting the node: %v", err)
	}
	stopped := false
	stop := func() {
		stopped = true
		if err := n.Stop(); err != nil {
			t.Errorf("stopping the node: %v", err)
		}
	}
	defer func() {
		if !stopped {
			logTail(t, n)
			stop()
		}
	}()

	err = wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		node, err := cp.Client.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.Status == corev1.ConditionTrue, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("node %s not Ready: %v", n.Name, err)
	}
	step("node %s Ready", n.Name)

	ns, err := cp.CreateNamespace(ctx, "node")
	if err != nil {
		t.Fatal(err)
	}
	pods := cp.Client.CoreV1().Pods(ns)
	pod, err := pods.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "pause"},
		Spec: corev1.PodSpec{
			NodeName:                      n.Name, // there is no scheduler
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](5),
			Containers: []corev1.Container{{
				Name: "pause", Image: imageName, ImagePullPolicy: corev1.PullNever,
			}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		pod, err = pods.Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return pod.Status.Phase == corev1.PodRunning && pod.Status.PodIP != "", nil
	})
	if err != nil {
		t.Fatalf("pod %s/%s not Running with an IP: %v; status %+v", ns, pod.Name, err, pod.Status)
	}
	step("pod %s/%s Running, IP %s", ns, pod.Name, pod.Status.PodIP)
	if ip := net.ParseIP(pod.Status.PodIP); ip == nil || !n.Subnet.Contains(ip) {
		t.Errorf("pod IP %s is not in the node's subnet %s", pod.Status.PodIP, n.Subnet)
	}
	if out, err := n.Crictl(ctx, "pods"); err == nil {
		t.Logf("crictl pods:\n%s", out)
	}
	checkPodNetwork(ctx, t, n, pod)

	if err := pods.Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
	if err != nil {
		t.Fatalf("pod %s/%s not gone after its deletion: %v", ns, pod.Name, err)
	}
	step("pod %s/%s gone", ns, pod.Name)

	stop()
	step("node stopped")
	if left := n.Leftovers(); len(left) > 0 {
		t.Errorf("left on the machine after Stop: %v", left)
	}
}

// checkPodNetwork checks that the Pod's network namespace has its IP and no route beyond the node's subnet,
// and that the host forwards no more than before.
func checkPodNetwork(ctx context.Context, t *testing.T, n *Node, pod *corev1.Pod) {
	t.Helper()
	out, err := n.Crictl(ctx, "pods", "--quiet", "--namespace", pod.Namespace, "--name", pod.Name)
	if err != nil {
		t.Errorf("crictl pods: %v: %s", err, out)
		return
	}
	id := strings.TrimSpace(string(out))
	out, err = n.Crictl(ctx, "inspectp", id)
	if err != nil {
		t.Errorf("crictl inspectp %s: %v: %s", id, err, out)
		return
	}
	var inspect struct {
		Info struct {
			Pid int `json:"pid"`
		} `json:"info"`
	}
	if err := json.Unmarshal(out, &inspect); err != nil || inspect.Info.Pid == 0 {
		t.Errorf("no sandbox pid in crictl inspectp %s (%v)", id, err)
		return
	}
	routes, err := exec.CommandContext(ctx, "nsenter", "-t", strconv.Itoa(inspect.Info.Pid), "-n", "ip", "-4", "route").CombinedOutput()
	if err != nil {
		t.Errorf("routes in the Pod's network namespace: %v: %s", err, routes)
		return
	}
	t.Logf("routes in the Pod's network namespace:\n%s", routes)
	for _, line := range strings.Split(strings.TrimSpace(string(routes)), "\n") {
		if !strings.HasPrefix(line, n.Subnet.String()+" ") {
			t.Errorf("the Pod has a route beyond its subnet %s: %q", n.Subnet, line)
		}
	}
	if b, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); strings.TrimSpace(string(b)) != ipForward {
		t.Errorf("net.ipv4.ip_forward is %s with the Pod running, %s before", strings.TrimSpace(string(b)), ipForward)
	}
}

// logTail logs the end of the kubelet's and containerd's logs, for a failed run.
func logTail(t *testing.T, n *Node) {
	for _, name := range []string{"containerd.log", "kubelet.log"} {
		b, err := os.ReadFile(n.path(name))
		if err != nil {
			continue
		}
		if len(b) > 6000 {
			b = b[len(b)-6000:]
		}
		t.Logf("end of %s:\n%s", name, b)
	}
}
