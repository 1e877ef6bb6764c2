package lifelock

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
)

// Identity discovery on a fake clientset: only the reading of env, files and one Pod object is tested here;
// the envtest suites prove the errors against a real API server.
func TestResolveOwnPod(t *testing.T) {
	host, _ := os.Hostname()
	pod := func(name string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-" + name)}}
	}
	withIP := func(p *corev1.Pod, ip string) *corev1.Pod {
		p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
		return p
	}
	saDir := t.TempDir()
	saFile := filepath.Join(saDir, "namespace")
	if err := os.WriteFile(saFile, []byte("ns\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := podIPWait
	podIPWait = 200 * time.Millisecond
	defer func() { podIPWait = old }()
	for _, tc := range []struct {
		name            string
		env             map[string]string
		saFile          string
		optName, optNS  string
		pods            []*corev1.Pod
		want            PodRef
		wantErr         error
		wantErrContains string
	}{
		{name: "downward API env", env: map[string]string{PodNameEnv: "a", PodNamespaceEnv: "ns"}, pods: []*corev1.Pod{pod("a")},
			want: PodRef{Namespace: "ns", Name: "a", UID: "uid-a"}},
		{name: "options override env", env: map[string]string{PodNameEnv: "a", PodNamespaceEnv: "other"}, optName: "b", optNS: "ns",
			pods: []*corev1.Pod{pod("a"), pod("b")}, want: PodRef{Namespace: "ns", Name: "b", UID: "uid-b"}},
		{name: "namespace from the service-account file", env: map[string]string{PodNameEnv: "a"}, saFile: saFile, pods: []*corev1.Pod{pod("a")},
			want: PodRef{Namespace: "ns", Name: "a", UID: "uid-a"}},
		{name: "POD_UID matches", env: map[string]string{PodNameEnv: "a", PodNamespaceEnv: "ns", PodUIDEnv: "uid-a"}, pods: []*corev1.Pod{pod("a")},
			want: PodRef{Namespace: "ns", Name: "a", UID: "uid-a"}},
		{name: "POD_UID of a Pod re-created under the same name", env: map[string]string{PodNameEnv: "a", PodNamespaceEnv: "ns", PodUIDEnv: "uid-old"}, pods: []*corev1.Pod{pod("a")},
			wantErr: ErrPodNotFound, wantErrContains: "has UID uid-a, but this process runs in the Pod with UID uid-old"},
		{name: "not in a cluster", wantErr: ErrNotInCluster, wantErrContains: "without --leader-elect"},
		{name: "pod missing", env: map[string]string{PodNameEnv: "gone", PodNamespaceEnv: "ns"}, wantErr: ErrPodNotFound, wantErrContains: "ns/gone"},
		{name: "hostname names no pod", env: map[string]string{PodNamespaceEnv: "ns"}, wantErr: ErrPodNameUnknown, wantErrContains: "metadata.name"},
		{name: "hostname names a pod with a local IP", env: map[string]string{PodNamespaceEnv: "ns"}, pods: []*corev1.Pod{withIP(pod(host), localIP(t))},
			want: PodRef{Namespace: "ns", Name: host, UID: "uid-" + host}},
		{name: "a loopback pod IP proves nothing", env: map[string]string{PodNamespaceEnv: "ns"}, pods: []*corev1.Pod{withIP(pod(host), "127.0.0.1")},
			wantErr: ErrPodNameUnknown, wantErrContains: "not provably this Pod"},
		{name: "hostname names a pod with no IP yet", env: map[string]string{PodNamespaceEnv: "ns"}, pods: []*corev1.Pod{pod(host)},
			wantErr: ErrPodNameUnknown, wantErrContains: "has published no IP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{PodNameEnv, PodNamespaceEnv, PodUIDEnv} {
				t.Setenv(k, "") // restores the value after the test
				if err := os.Unsetenv(k); err != nil {
					t.Fatal(err)
				}
			}
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			old := serviceAccountNamespaceFile
			serviceAccountNamespaceFile = filepath.Join(t.TempDir(), "absent")
			if tc.saFile != "" {
				serviceAccountNamespaceFile = tc.saFile
			}
			defer func() { serviceAccountNamespaceFile = old }()
			client := fake.NewClientset()
			for _, p := range tc.pods {
				if _, err := client.CoreV1().Pods(p.Namespace).Create(t.Context(), p, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			got, err := resolveOwnPod(t.Context(), client, tc.optName, tc.optNS, "")
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantErrContains) {
					t.Fatalf("err = %v; want %v containing %q", err, tc.wantErr, tc.wantErrContains)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("resolveOwnPod = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// localIP returns an address of this machine that is not a loopback one, as a Pod IP would be.
func localIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	t.Fatal("this machine has no address but loopback; the hostname check needs one, as a Pod has")
	return ""
}

// A Pod found by the hostname whose IP is not published yet (a kubelet may write it after the containers
// started) is waited for, not refused; a Pod that never gets one is refused after the bound.
func TestResolveOwnPodWaitsForTheIP(t *testing.T) {
	host, _ := os.Hostname()
	for _, k := range []string{PodNameEnv, PodUIDEnv} {
		t.Setenv(k, "")
		if err := os.Unsetenv(k); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv(PodNamespaceEnv, "ns")
	client := fake.NewClientset()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: host, UID: "uid-h"}}
	if _, err := client.CoreV1().Pods("ns").Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	watching := make(chan struct{})
	client.PrependWatchReactor("pods", func(clienttesting.Action) (bool, watch.Interface, error) {
		close(watching)
		return false, nil, nil // and on to the tracker's watch
	})
	done := make(chan error, 1)
	go func() {
		_, err := resolveOwnPod(t.Context(), client, "", "", "")
		done <- err
	}()
	// The kubelet publishes the IP once the process waits for it.
	<-watching
	withIP := pod.DeepCopy()
	withIP.Status.PodIPs = []corev1.PodIP{{IP: localIP(t)}}
	if _, err := client.CoreV1().Pods("ns").UpdateStatus(t.Context(), withIP, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("resolveOwnPod after the IP was published: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("resolveOwnPod did not see the IP")
	}

	old := podIPWait
	podIPWait = 200 * time.Millisecond
	defer func() { podIPWait = old }()
	noIP := fake.NewClientset(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: host, UID: "uid-h"}})
	if _, err := resolveOwnPod(t.Context(), noIP, "", "", ""); !errors.Is(err, ErrPodNameUnknown) || !strings.Contains(err.Error(), "has published no IP") {
		t.Fatalf("a Pod that never gets an IP: %v", err)
	}
}
