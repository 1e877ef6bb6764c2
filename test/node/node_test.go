package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/lifelock/lifelock/test/harness/witness"
)

// TestNode starts a control plane and a real node, waits for the Node to be Ready, runs a Pod on it until it
// is Running with an IP, deletes it, stops everything and checks that nothing is left on the machine.
func TestNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	ipForward := readSysctl(t, "net/ipv4/ip_forward")
	c := startCluster(ctx, t)
	cp, n, step := c.cp, c.n, c.step

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
	checkPodNetwork(ctx, t, n, pod, ipForward)

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

	// A force delete (grace 0): the object goes at once; the kubelet learns it from its watch and stops the
	// container, which runs on meanwhile. The pause program stops on SIGTERM, so this is how long a
	// container that does not stop by itself outlives its force-deleted Pod.
	for i := range 3 {
		runOn := forceDeleteRunOn(ctx, t, c, ns, fmt.Sprintf("pause-force-%d", i))
		step("force-deleted pod %s/pause-force-%d: its container ran on for %s", ns, i, runOn)
	}

	c.stop()
}

// forceDeleteRunOn runs a pause Pod named name, deletes it with grace 0 once it is Running and returns how
// long its container's process ran after the delete request.
func forceDeleteRunOn(ctx context.Context, t *testing.T, c *cluster, ns, name string) time.Duration {
	t.Helper()
	pods := c.cp.Client.CoreV1().Pods(ns)
	_, err := pods.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			NodeName:                      c.n.Name,
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](30),
			Containers: []corev1.Container{{
				Name: "pause", Image: imageName, ImagePullPolicy: corev1.PullNever,
				Env: []corev1.EnvVar{{Name: "LIFELOCK_NODE_POD", Value: name}}, // tells it from the sandbox's pause
			}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		pod, err := pods.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		pids = processesWith("/pause", "LIFELOCK_NODE_POD="+name)
		return pod.Status.Phase == corev1.PodRunning && len(pids) == 1, nil
	})
	if err != nil {
		t.Fatalf("pod %s/%s not Running with one container process (%v): %v", ns, name, pids, err)
	}
	exited, err := exitOf(ctx, pids[0])
	if err != nil {
		t.Fatal(err)
	}
	t0 := witness.Now()
	if err := pods.Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-exited:
		return at - t0
	case <-time.After(time.Minute):
		t.Fatalf("the container of force-deleted pod %s/%s still runs a minute later", ns, name)
	}
	return 0
}

// checkPodNetwork checks that the Pod's network namespace has its IP and no route beyond the node's subnet,
// and that the host forwards no more than before.
func checkPodNetwork(ctx context.Context, t *testing.T, n *Node, pod *corev1.Pod, ipForward string) {
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
