package node

import (
	"context"
	"encoding/json"
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

	c.stop()
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
