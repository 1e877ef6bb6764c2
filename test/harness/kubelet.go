package harness

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

// There is no kubelet in the test control plane: these functions write what it would.

// ContainerName is the name of a candidate Pod's one container.
const ContainerName = "manager"

// CreateNamespace creates a namespace with a unique name starting with prefix.
func (cp *ControlPlane) CreateNamespace(ctx context.Context, prefix string) (string, error) {
	ns, err := cp.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("creating namespace: %w", err)
	}
	return ns.Name, nil
}

// EnsureNode creates a Ready Node called name, if there is none. Candidate Pods are bound to it: the Pod GC
// deletes Pods bound to a Node that does not exist.
func (cp *ControlPlane) EnsureNode(ctx context.Context, name string) error {
	_, err := cp.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating node %s: %w", name, err)
	}
	return cp.SetNodeReady(ctx, name, true)
}

// SetNodeReady writes the Node's Ready condition, as the node lifecycle controller would on node loss.
func (cp *ControlPlane) SetNodeReady(ctx context.Context, name string, ready bool) error {
	status := corev1.ConditionTrue
	if !ready {
		status = corev1.ConditionFalse
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := cp.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
		_, err = cp.Client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
}

// TaintNode adds taint to the Node, replacing a taint with the same key and effect, as `kubectl taint nodes`
// does (for example node.kubernetes.io/out-of-service=nodeshutdown:NoExecute, what an administrator writes
// on a Node that is shut down).
func (cp *ControlPlane) TaintNode(ctx context.Context, name string, taint corev1.Taint) error {
	return cp.updateNode(ctx, name, func(n *corev1.Node) {
		taints := []corev1.Taint{taint}
		for _, t := range n.Spec.Taints {
			if t.Key != taint.Key || t.Effect != taint.Effect {
				taints = append(taints, t)
			}
		}
		n.Spec.Taints = taints
	})
}

// UntaintNode removes every taint with key from the Node, whatever its effect.
func (cp *ControlPlane) UntaintNode(ctx context.Context, name, key string) error {
	return cp.updateNode(ctx, name, func(n *corev1.Node) {
		var taints []corev1.Taint
		for _, t := range n.Spec.Taints {
			if t.Key != key {
				taints = append(taints, t)
			}
		}
		n.Spec.Taints = taints
	})
}

// updateNode applies change to the Node's current spec and metadata.
func (cp *ControlPlane) updateNode(ctx context.Context, name string, change func(*corev1.Node)) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := cp.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		change(n)
		_, err = cp.Client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("updating node %s: %w", name, err)
	}
	return nil
}

// CreatePod creates a candidate Pod bound to node, Running, with its container running and this machine's
// LocalIP as its IP: a Pod as a kubelet shows it once it has started. An empty name gets a random one. For a
// process that plays the container, use CreatePendingPod and StartContainer, which write the same status
// in the order a kubelet does.
func (cp *ControlPlane) CreatePod(ctx context.Context, ns, name, node string) (*corev1.Pod, error) {
	pod, err := cp.CreatePendingPod(ctx, ns, name, node)
	if err != nil {
		return nil, err
	}
	ip, _ := LocalIP() // only processes in the Pod's sandbox need it; StartPodProcess says so if it is missing
	return cp.publishRunning(ctx, pod, ip)
}

// CreatePendingPod creates a candidate Pod bound to node as a kubelet first shows it: Pending, its
// container waiting in ContainerCreating, and no IP yet. An empty name gets a random one.
func (cp *ControlPlane) CreatePendingPod(ctx context.Context, ns, name, node string) (*corev1.Pod, error) {
	if name == "" {
		name = "candidate-" + rand.String(5)
	}
	pod, err := cp.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "lifelock-candidate"}},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			TerminationGracePeriodSeconds: ptr.To[int64](10),
			Containers:                    []corev1.Container{{Name: ContainerName, Image: "lifelock-example:test"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating pod %s/%s: %w", ns, name, err)
	}
	now := metav1.Now()
	pod.Status = corev1.PodStatus{
		Phase:      corev1.PodPending,
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}},
		StartTime:  &now,
		ContainerStatuses: []corev1.ContainerStatus{{
			Name: ContainerName, Image: "lifelock-example:test", Started: ptr.To(false),
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}},
		}},
	}
	return cp.Client.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
}

// StartContainer runs program with args as the container of pod (made by CreatePendingPod), in the order
// a kubelet follows on a Pod's first start: the process starts, and only then is the Pod written Running
// with its IP and the container running and ready. A real kubelet creates the sandbox (and its IP), starts
// the containers, and publishes the IP in the status sync that follows, so a program must not expect its
// Pod's IP before it runs. See StartPodProcess for the sandbox.
func (cp *ControlPlane) StartContainer(ctx context.Context, pod *corev1.Pod, env []string, program string, args ...string) (*Process, error) {
	ip, err := LocalIP()
	if err != nil {
		return nil, fmt.Errorf("pod %s/%s needs an IP of this machine: %w", pod.Namespace, pod.Name, err)
	}
	proc, err := StartPodProcess(pod, env, program, args...)
	if err != nil {
		return nil, err
	}
	running, err := cp.publishRunning(ctx, pod, ip)
	if err != nil {
		proc.Kill()
		<-proc.Done()
		return nil, fmt.Errorf("publishing pod %s/%s running: %w", pod.Namespace, pod.Name, err)
	}
	proc.Pod = running
	return proc, nil
}

// PublishPodRunning writes pod Running, with this machine's LocalIP as its IP and its container running:
// the status sync of a kubelet whose container started (StartContainer does it at once; a test that starts
// the process with StartPodProcess chooses when).
func (cp *ControlPlane) PublishPodRunning(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, error) {
	ip, err := LocalIP()
	if err != nil {
		return nil, fmt.Errorf("pod %s/%s needs an IP of this machine: %w", pod.Namespace, pod.Name, err)
	}
	return cp.publishRunning(ctx, pod, ip)
}

// publishRunning writes pod Running and ready, with ip as its IP and its container running, and returns it
// as stored.
func (cp *ControlPlane) publishRunning(ctx context.Context, pod *corev1.Pod, ip string) (*corev1.Pod, error) {
	return cp.updatePodStatusTo(ctx, pod, func(p *corev1.Pod) {
		now := metav1.Now()
		p.Status.PodIP, p.Status.PodIPs = ip, podIPs(ip)
		p.Status.Phase = corev1.PodRunning
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{
			Name: ContainerName, Image: "lifelock-example:test", Ready: true, Started: ptr.To(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		}}
	})
}

// updatePodStatus applies change to the Pod's current status.
func (cp *ControlPlane) updatePodStatus(ctx context.Context, pod *corev1.Pod, change func(*corev1.Pod)) error {
	_, err := cp.updatePodStatusTo(ctx, pod, change)
	return err
}

// updatePodStatusTo is updatePodStatus returning the Pod as stored.
func (cp *ControlPlane) updatePodStatusTo(ctx context.Context, pod *corev1.Pod, change func(*corev1.Pod)) (*corev1.Pod, error) {
	var out *corev1.Pod
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p, err := cp.Client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.UID != pod.UID {
			return fmt.Errorf("pod %s/%s was replaced (uid %s, want %s)", pod.Namespace, pod.Name, p.UID, pod.UID)
		}
		change(p)
		out, err = cp.Client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
		return err
	})
	return out, err
}

// TerminateContainers writes every container of the Pod terminated and leaves the phase as it is: what a
// kubelet shows of containers that exited and are to be restarted. A Pod whose containers stopped for good
// (deleted, evicted, completed) gets TerminatePod instead, as a real kubelet writes it.
func (cp *ControlPlane) TerminateContainers(ctx context.Context, pod *corev1.Pod, exitCode int32) error {
	return cp.updatePodStatus(ctx, pod, func(p *corev1.Pod) {
		now := metav1.Now()
		for i := range p.Status.ContainerStatuses {
			s := &p.Status.ContainerStatuses[i]
			s.Ready, s.Started = false, ptr.To(false)
			s.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: exitCode, FinishedAt: now, Reason: "Completed"}}
		}
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}}
	})
}

// SetPodPhase writes the Pod's phase and reason (Failed/Evicted for an eviction, Succeeded for a completed
// Pod) while its containers are left as they are.
func (cp *ControlPlane) SetPodPhase(ctx context.Context, pod *corev1.Pod, phase corev1.PodPhase, reason string) error {
	return cp.updatePodStatus(ctx, pod, func(p *corev1.Pod) {
		p.Status.Phase, p.Status.Reason = phase, reason
	})
}

// EvictByKubelet writes what a kubelet writes once it has stopped the containers of a Pod it evicts (node
// pressure; preemption and graceful node shutdown look alike): every container terminated and the phase
// Failed, reason Evicted, in one status update. Stop the Pod's process first, as the kubelet does.
func (cp *ControlPlane) EvictByKubelet(ctx context.Context, pod *corev1.Pod) error {
	return cp.updatePodStatus(ctx, pod, func(p *corev1.Pod) {
		now := metav1.Now()
		for i := range p.Status.ContainerStatuses {
			s := &p.Status.ContainerStatuses[i]
			s.Ready, s.Started = false, ptr.To(false)
			s.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, FinishedAt: now, Reason: "Error"}}
		}
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}, {Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: "TerminationByKubelet"}}
		p.Status.Phase, p.Status.Reason = corev1.PodFailed, "Evicted"
	})
}

// DeletePodGracefully plays a graceful Pod deletion from start to end, as the API server and a real kubelet
// do once the candidate process has exited with code 0: DeletePodAsKubelet with exit code 0.
func (cp *ControlPlane) DeletePodGracefully(ctx context.Context, pod *corev1.Pod) error {
	return cp.DeletePodAsKubelet(ctx, pod, 0)
}

// DeletePodAsKubelet plays a graceful Pod deletion in the order a real kubelet (v1.37, measured on a real
// node by test/node) produces once the container's process has stopped with exitCode: the delete request
// (deletionTimestamp), one status write with every container terminated and the phase terminal (TerminatePod),
// and the final delete with grace period 0 and a UID precondition. The real kubelet takes 1 to 2 s from the
// process's exit to the status write and 0.3 to 0.8 s more to the delete; this plays them at once.
func (cp *ControlPlane) DeletePodAsKubelet(ctx context.Context, pod *corev1.Pod, exitCode int32) error {
	if err := cp.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(pod.UID))}); err != nil {
		return fmt.Errorf("deleting pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	if err := cp.TerminatePod(ctx, pod, exitCode); err != nil {
		return fmt.Errorf("terminating pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return cp.ForceDeletePod(ctx, pod)
}

// TerminatePod writes what a real kubelet writes once every container of a Pod it stops for good has
// exited with exitCode (a deleted Pod, or one whose containers are not restarted): every container
// terminated (Completed for 0, Error otherwise), Ready false, and the phase Succeeded for 0, Failed
// otherwise, all in one status update. The kubelet never writes a terminal phase while a container runs.
func (cp *ControlPlane) TerminatePod(ctx context.Context, pod *corev1.Pod, exitCode int32) error {
	return cp.updatePodStatus(ctx, pod, func(p *corev1.Pod) {
		now := metav1.Now()
		reason, phase := "Completed", corev1.PodSucceeded
		if exitCode != 0 {
			reason, phase = "Error", corev1.PodFailed
		}
		for i := range p.Status.ContainerStatuses {
			s := &p.Status.ContainerStatuses[i]
			s.Ready, s.Started = false, ptr.To(false)
			s.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: exitCode, FinishedAt: now, Reason: reason}}
		}
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}}
		p.Status.Phase = phase
	})
}

// ForceDeletePod deletes the Pod with grace period 0, whatever its containers do (kubectl delete --force).
func (cp *ControlPlane) ForceDeletePod(ctx context.Context, pod *corev1.Pod) error {
	err := cp.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To[int64](0),
		Preconditions:      metav1.NewUIDPreconditions(string(pod.UID)),
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting pod %s/%s with grace 0: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

func podIPs(ip string) []corev1.PodIP {
	if ip == "" {
		return nil
	}
	return []corev1.PodIP{{IP: ip}}
}
