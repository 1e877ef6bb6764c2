package node

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/lifelock/lifelock/test/harness"
)

// binEnv names the directory hack/build-node.sh prints; without it the tests are skipped.
const binEnv = "LIFELOCK_NODE_BIN"

// imageName is the pause image's name; it is also the sandbox image.
const imageName = "lifelock.local/pause:1"

// cluster is a control plane and a node registered with it, Ready.
type cluster struct {
	cp *harness.ControlPlane
	n  *Node
	// dir is the test's temporary directory, with the programs it built.
	dir string
	// stop stops the node, then the control plane, and fails the test if the node left anything behind;
	// it runs once, whoever calls it first (the test, or the cleanup registered by startCluster).
	stop func()
	step func(format string, args ...any)
}

// startCluster skips the test unless it can run (binEnv set, root), builds the pause image and
// runc-noseccomp, starts a control plane and a node, and waits until the Node is Ready. Whatever happens,
// the node and the control plane are stopped at the end of the test, and the test fails if the node left
// something on the machine.
func startCluster(ctx context.Context, t *testing.T) *cluster {
	t.Helper()
	bin := requireNode(t)
	started := time.Now()
	c := &cluster{dir: t.TempDir()}
	c.step = func(format string, args ...any) {
		t.Logf("[%5.1fs] "+format, append([]any{time.Since(started).Seconds()}, args...)...)
	}
	for _, prog := range []string{"pause", "runc-noseccomp"} {
		build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(c.dir, prog), "./"+prog)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v: %s", prog, err, out)
		}
	}
	image := filepath.Join(c.dir, "pause.tar")
	if err := WriteImage(image, filepath.Join(c.dir, "pause"), imageName); err != nil {
		t.Fatal(err)
	}
	c.step("built the pause image %s", image)

	cp, err := harness.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.cp = cp
	c.step("control plane up")
	// The kubelet's user: system:masters, since the test control plane authorises with RBAC only (no Node
	// authorizer) and grants system:nodes nothing.
	kubeconfig, err := cp.AddUserKubeconfig("system:node:lifelock", "system:nodes", "system:masters")
	if err != nil {
		_ = cp.Stop()
		t.Fatal(err)
	}
	n, err := Start(ctx, Options{Bin: bin, Kubeconfig: kubeconfig, Image: image, ImageName: imageName,
		Runc: filepath.Join(c.dir, "runc-noseccomp"), Logf: c.step})
	if err != nil {
		_ = cp.Stop()
		t.Fatalf("starting the node: %v", err)
	}
	c.n = n
	stopped := false
	c.stop = func() {
		if stopped {
			return
		}
		stopped = true
		if t.Failed() {
			logTail(t, n)
		}
		if err := n.Stop(); err != nil {
			t.Errorf("stopping the node: %v", err)
		}
		c.step("node stopped")
		if left := n.Leftovers(); len(left) > 0 {
			t.Errorf("left on the machine after Stop: %v", left)
		}
		if err := cp.Stop(); err != nil {
			t.Errorf("stopping the control plane: %v", err)
		}
	}
	t.Cleanup(c.stop)

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
	c.step("node %s Ready", n.Name)
	return c
}

// requireNode skips the test unless a node can run: the node's binaries named by binEnv, and root. It
// returns the binaries' directory.
func requireNode(t *testing.T) string {
	t.Helper()
	bin := os.Getenv(binEnv)
	if bin == "" {
		t.Skipf("%s is not set: run `make test-node` (or set it to what hack/build-node.sh prints)", binEnv)
	}
	if os.Geteuid() != 0 {
		t.Skip("a node needs root")
	}
	return bin
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

// readSysctl returns the value of a sysctl, by its path under /proc/sys.
func readSysctl(t *testing.T, key string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc/sys", key))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
