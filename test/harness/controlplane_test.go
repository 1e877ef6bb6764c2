package harness

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// TestRestartAPIServer checks that objects, connections handed out before a restart of kube-apiserver, and
// the garbage collector all survive it.
func TestRestartAPIServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cp, err := Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Error(err)
		}
	})

	ns, err := cp.CreateNamespace(ctx, "restart")
	if err != nil {
		t.Fatal(err)
	}
	owner, err := cp.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "owner"},
		Data:       map[string]string{"k": "v"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Connections made before the restart: a user's, and the admin kubeconfig file's.
	userConfig, err := cp.AddUser("restart-user", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	user, err := kubernetes.NewForConfig(userConfig)
	if err != nil {
		t.Fatal(err)
	}
	fileConfig, err := clientcmd.BuildConfigFromFlags("", cp.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := kubernetes.NewForConfig(fileConfig)
	if err != nil {
		t.Fatal(err)
	}

	pidBefore, err := cp.APIServerPID()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cp.EtcdPID(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cp.RestartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-apiserver restarted in %v", time.Since(start).Round(time.Millisecond))
	// APIServerPID names the new process, not the stopped one.
	if pid, err := cp.APIServerPID(); err != nil || pid == pidBefore {
		t.Fatalf("APIServerPID after the restart = %d, %v; want a running process other than %d", pid, err, pidBefore)
	}

	for name, c := range map[string]kubernetes.Interface{"cp.Client": cp.Client, "AddUser": user, "cp.Kubeconfig": admin} {
		got, err := c.CoreV1().ConfigMaps(ns).Get(ctx, owner.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("reading the ConfigMap back through %s: %v", name, err)
		}
		if got.UID != owner.UID || got.Data["k"] != "v" {
			t.Fatalf("ConfigMap read through %s = %+v, want %+v", name, got, owner)
		}
	}

	// The garbage collector (kube-controller-manager stayed up and reconnected) still collects.
	dependent, err := cp.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
		Name:            "dependent",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID}},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.Client.CoreV1().ConfigMaps(ns).Delete(ctx, owner.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := cp.Client.CoreV1().ConfigMaps(ns).Get(ctx, dependent.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
	if err != nil {
		t.Fatalf("waiting for the garbage collector to delete the dependent ConfigMap after the restart: %v", err)
	}
}
