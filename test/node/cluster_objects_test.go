package node

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/lifelock/lifelock/test/component"
	"github.com/lifelock/lifelock/test/harness"
	"github.com/lifelock/lifelock/test/harness/witness"
)

// applyExampleRBAC creates in ns what the example's kustomization deploys besides the Deployment (its
// ServiceAccount, config/rbac's component and the example's ConfigMap Role, rendered by kustomize as an
// overlay for ns would), and returns the ServiceAccount the Pods run as. The objects come from the
// repository's own manifests, so the Pods run with exactly the permissions users grant.
func applyExampleRBAC(ctx context.Context, client kubernetes.Interface, ns string) (string, error) {
	sa, objs, err := component.ExampleRBAC(harness.RepoRoot(), ns)
	if err != nil {
		return "", err
	}
	for _, o := range objs {
		doc, err := o.MarshalJSON()
		if err != nil {
			return "", err
		}
		if err := createObject(ctx, client, ns, o.GetKind(), doc); err != nil {
			return "", fmt.Errorf("%s %s: %w", o.GetKind(), o.GetName(), err)
		}
	}
	return sa, nil
}

// createObject creates the object doc (YAML or JSON) of kind in ns; ExampleRBAC has named it for ns.
func createObject(ctx context.Context, client kubernetes.Interface, ns, kind string, doc []byte) error {
	create := metav1.CreateOptions{}
	switch kind {
	case "ServiceAccount":
		var o corev1.ServiceAccount
		if err := yaml.UnmarshalStrict(doc, &o); err != nil {
			return err
		}
		_, err := client.CoreV1().ServiceAccounts(ns).Create(ctx, &o, create)
		return err
	case "Role":
		var o rbacv1.Role
		if err := yaml.UnmarshalStrict(doc, &o); err != nil {
			return err
		}
		_, err := client.RbacV1().Roles(ns).Create(ctx, &o, create)
		return err
	case "RoleBinding":
		var o rbacv1.RoleBinding
		if err := yaml.UnmarshalStrict(doc, &o); err != nil {
			return err
		}
		_, err := client.RbacV1().RoleBindings(ns).Create(ctx, &o, create)
		return err
	case "ClusterRole":
		var o rbacv1.ClusterRole
		if err := yaml.UnmarshalStrict(doc, &o); err != nil {
			return err
		}
		_, err := client.RbacV1().ClusterRoles().Create(ctx, &o, create)
		return err
	case "ClusterRoleBinding":
		var o rbacv1.ClusterRoleBinding
		if err := yaml.UnmarshalStrict(doc, &o); err != nil {
			return err
		}
		_, err := client.RbacV1().ClusterRoleBindings().Create(ctx, &o, create)
		return err
	case "":
		return nil // an empty document
	}
	return fmt.Errorf("unexpected kind %q", kind)
}

// podKubeconfig writes to path a copy of the kubeconfig at from that connects through server (the node's
// Forward to the API server) while still verifying the API server's certificate by its own host name.
func podKubeconfig(from, path, server string) error {
	cfg, err := clientcmd.LoadFromFile(from)
	if err != nil {
		return err
	}
	for _, c := range cfg.Clusters {
		u, err := url.Parse(c.Server)
		if err != nil {
			return err
		}
		c.TLSServerName = u.Hostname()
		c.Server = "https://" + server
	}
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return err
	}
	return os.Chmod(path, 0o644) // the container runs as 65532
}

// podEvent is one watch event of a Pod, stamped on CLOCK_MONOTONIC (witness.Now) when it arrived.
type podEvent struct {
	At    time.Duration
	Type  watch.EventType
	Name  string
	UID   types.UID
	State string // phase, deletion, containers: see describePod
	Pod   *corev1.Pod
}

// podLog records every event of the Pods of a namespace, from a watch the test keeps open.
type podLog struct {
	mu     sync.Mutex
	events []podEvent
}

// watchPods starts recording the Pods of ns until ctx ends.
func watchPods(ctx context.Context, client kubernetes.Interface, ns string) (*podLog, error) {
	l := &podLog{}
	list, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	rv := list.ResourceVersion
	go func() {
		for ctx.Err() == nil {
			w, err := client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true})
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			for ev := range w.ResultChan() {
				pod, ok := ev.Object.(*corev1.Pod)
				if !ok {
					continue
				}
				rv = pod.ResourceVersion
				if ev.Type == watch.Bookmark {
					continue
				}
				l.mu.Lock()
				l.events = append(l.events, podEvent{At: witness.Now(), Type: ev.Type, Name: pod.Name, UID: pod.UID, State: describePod(pod), Pod: pod})
				l.mu.Unlock()
			}
			w.Stop()
		}
	}()
	return l, nil
}

// of returns the events of the Pod with uid that arrived at or after from.
func (l *podLog) of(uid types.UID, from time.Duration) []podEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []podEvent
	for _, e := range l.events {
		if e.UID == uid && e.At >= from {
			out = append(out, e)
		}
	}
	return out
}

// describePod summarises what a kubelet writes: phase and reason, deletion, conditions that matter here,
// and each container's state and restart count.
func describePod(p *corev1.Pod) string {
	parts := []string{string(p.Status.Phase)}
	if p.Status.Reason != "" {
		parts[0] += "/" + p.Status.Reason
	}
	if p.DeletionTimestamp != nil {
		parts = append(parts, fmt.Sprintf("deleting(grace %ds)", ptrValue(p.DeletionGracePeriodSeconds)))
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue {
			parts = append(parts, "DisruptionTarget/"+c.Reason)
		}
		if c.Type == corev1.PodReady {
			parts = append(parts, "Ready="+string(c.Status))
		}
	}
	for _, s := range p.Status.ContainerStatuses {
		state := "?"
		switch {
		case s.State.Running != nil:
			state = "running"
		case s.State.Terminated != nil:
			state = fmt.Sprintf("terminated(%d %s)", s.State.Terminated.ExitCode, s.State.Terminated.Reason)
		case s.State.Waiting != nil:
			state = "waiting(" + s.State.Waiting.Reason + ")"
		}
		if s.LastTerminationState.Terminated != nil {
			state += fmt.Sprintf(" last=terminated(%d)", s.LastTerminationState.Terminated.ExitCode)
		}
		parts = append(parts, fmt.Sprintf("%s:%s restarts=%d", s.Name, state, s.RestartCount))
	}
	return strings.Join(parts, " ")
}

func ptrValue[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// allTerminated says whether the Pod lists container statuses and every one is terminated.
func allTerminated(p *corev1.Pod) bool {
	if len(p.Status.ContainerStatuses) == 0 {
		return false
	}
	return !slices.ContainsFunc(p.Status.ContainerStatuses, func(s corev1.ContainerStatus) bool { return s.State.Terminated == nil })
}

func terminal(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded
}
