package lifelock

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
)

// Environment variables read to find the candidate's own Pod. Set them with the downward API:
//
//	env:
//	- name: POD_NAME
//	  valueFrom: {fieldRef: {fieldPath: metadata.name}}
//	- name: POD_NAMESPACE
//	  valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
//	- name: POD_UID
//	  valueFrom: {fieldRef: {fieldPath: metadata.uid}}
//
// POD_UID is optional but worth giving: see Options.PodUID.
const (
	PodNameEnv      = "POD_NAME"
	PodNamespaceEnv = "POD_NAMESPACE"
	PodUIDEnv       = "POD_UID"
)

// serviceAccountNamespaceFile is where kubelet mounts the Pod's namespace. A variable so tests can point
// it elsewhere.
var serviceAccountNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// downwardAPIHint is appended to identity errors: the env that fixes them, as one line of YAML (flow
// style) that can be pasted into the container spec, since loggers escape the line breaks of an error.
const downwardAPIHint = "add to the manager container's spec: " +
	"env: [{name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}, " +
	"{name: POD_NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}]"

// PodRef names a Pod and its UID: the identity of a lock holder.
type PodRef struct {
	Namespace string // the Pod's namespace, which is also the lock's
	Name      string // the Pod's name (metadata.name)
	UID       string // the Pod's UID (metadata.uid): tells apart two Pods of one name, such as a StatefulSet's
}

// String writes the Pod as "<namespace>/<name> (uid <UID>)", for logs and errors.
func (p PodRef) String() string { return p.Namespace + "/" + p.Name + " (uid " + p.UID + ")" }

// findOwnPodName returns the namespace and name of the Pod this process runs in, without asking the API
// server. Explicit values win; then POD_NAME / POD_NAMESPACE; then, inside a Pod, the service-account
// namespace file and the hostname (which kubelet sets to the Pod name unless the Pod sets spec.hostname or
// uses the host network). A hostname-derived name is only a guess: the caller verifies it against the Pod.
func findOwnPodName(name, namespace string) (ns, podName string, fromHostname bool, err error) {
	ns = namespace
	if ns == "" {
		ns = os.Getenv(PodNamespaceEnv)
	}
	if ns == "" {
		b, readErr := os.ReadFile(serviceAccountNamespaceFile)
		switch {
		case readErr == nil:
			ns = strings.TrimSpace(string(b))
		case errors.Is(readErr, os.ErrNotExist):
			return "", "", false, fmt.Errorf("finding own Pod: %w: %s is unset and %s does not exist. "+
				"Outside a cluster, a single local process needs no election: run it without leader election "+
				"(in a kubebuilder project, without --leader-elect, as `make run` does). In a Pod, %s",
				ErrNotInCluster, PodNamespaceEnv, serviceAccountNamespaceFile, downwardAPIHint)
		default:
			return "", "", false, fmt.Errorf("finding own Pod: reading %s: %w", serviceAccountNamespaceFile, readErr)
		}
	}
	podName = name
	if podName == "" {
		podName = os.Getenv(PodNameEnv)
	}
	if podName == "" {
		host, hostErr := os.Hostname()
		if hostErr != nil || host == "" {
			return "", "", false, fmt.Errorf("finding own Pod: %w: %s is unset and the hostname is unavailable; %s",
				ErrPodNameUnknown, PodNameEnv, downwardAPIHint)
		}
		return ns, host, true, nil
	}
	return ns, podName, false, nil
}

// resolveOwnPod finds this process's Pod and reads its UID from the API server. uid (else $POD_UID), when
// known, must be the Pod's.
func resolveOwnPod(ctx context.Context, client kubernetes.Interface, name, namespace, uid string) (PodRef, error) {
	ns, podName, fromHostname, err := findOwnPodName(name, namespace)
	if err != nil {
		return PodRef{}, err
	}
	pod, err := client.CoreV1().Pods(ns).Get(ctx, podName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err) && fromHostname:
		return PodRef{}, fmt.Errorf("finding own Pod: %w: %s is unset and no Pod in namespace %q is named after the hostname %q; %s",
			ErrPodNameUnknown, PodNameEnv, ns, podName, downwardAPIHint)
	case apierrors.IsNotFound(err):
		return PodRef{}, fmt.Errorf("finding own Pod: %w: Pod %s/%s does not exist; check %s and %s (or Options.PodName and Options.PodNamespace)",
			ErrPodNotFound, ns, podName, PodNameEnv, PodNamespaceEnv)
	case apierrors.IsForbidden(err):
		return PodRef{}, fmt.Errorf("finding own Pod %s/%s: %w: grant verb get on pods in namespace %q (see config/rbac/lifelock_leader_election_role.yaml): %w",
			ns, podName, ErrMissingPermission, ns, err)
	case err != nil:
		return PodRef{}, fmt.Errorf("finding own Pod %s/%s: %w", ns, podName, err)
	}
	if uid == "" {
		uid = os.Getenv(PodUIDEnv)
	}
	if uid != "" && string(pod.UID) != uid {
		return PodRef{}, fmt.Errorf("finding own Pod: %w: Pod %s/%s has UID %s, but this process runs in the Pod with UID %s (%s or Options.PodUID): "+
			"its Pod was deleted and another was created under the same name; this process must exit",
			ErrPodNotFound, ns, podName, pod.UID, uid, PodUIDEnv)
	}
	if fromHostname && len(pod.Status.PodIPs) == 0 && pod.Name == podName && pod.Spec.Hostname == "" && !pod.Spec.HostNetwork {
		// A kubelet may publish the Pod's IP only after its containers have started: wait for it rather
		// than fail this first start with an identity error.
		if pod, err = waitForPodIP(ctx, client, pod); err != nil {
			return PodRef{}, err
		}
	}
	if fromHostname && !hostnameIsPod(pod, podName) {
		return PodRef{}, fmt.Errorf("finding own Pod: %w: %s is unset and Pod %s/%s, named like the hostname, is not provably this Pod (it sets spec.hostname or the host network, or none of its IPs is local); %s",
			ErrPodNameUnknown, PodNameEnv, ns, podName, downwardAPIHint)
	}
	return PodRef{Namespace: ns, Name: pod.Name, UID: string(pod.UID)}, nil
}

// hostnameIsPod reports whether pod is provably the one this process runs in, given that the hostname is
// host: kubelet gives the containers the Pod's name as hostname (unless spec.hostname or the host network
// say otherwise), and one of the Pod's IPs is an address of this network namespace. The IP check rules out
// another Pod whose spec.hostname happens to equal this Pod's name. Loopback addresses prove nothing (every
// network namespace has them), so they never count.
func hostnameIsPod(pod *corev1.Pod, host string) bool {
	if pod.Name != host || pod.Spec.Hostname != "" || pod.Spec.HostNetwork {
		return false
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, podIP := range pod.Status.PodIPs {
		ip := net.ParseIP(podIP.IP)
		if ip == nil || ip.IsLoopback() || ip.IsUnspecified() {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
				return true
			}
		}
	}
	return false
}

// podIPWait bounds how long a process found by its hostname waits for its Pod's IP to be published.
var podIPWait = 30 * time.Second

// waitForPodIP waits on a watch of pod until its status carries an IP (at most podIPWait, or ctx's end),
// and returns the Pod as it is then.
func waitForPodIP(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod) (*corev1.Pod, error) {
	ctx, cancel := context.WithTimeout(ctx, podIPWait)
	defer cancel()
	w, err := client.CoreV1().Pods(pod.Namespace).Watch(ctx, metav1.ListOptions{
		FieldSelector:   fields.OneTermEqualSelector("metadata.name", pod.Name).String(),
		ResourceVersion: pod.ResourceVersion,
	})
	if err != nil {
		return nil, fmt.Errorf("finding own Pod %s/%s: waiting for its IP: %w", pod.Namespace, pod.Name, err)
	}
	defer w.Stop()
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return nil, fmt.Errorf("finding own Pod %s/%s: the watch for its IP ended; %s", pod.Namespace, pod.Name, downwardAPIHint)
			}
			if p, ok := ev.Object.(*corev1.Pod); ok && len(p.Status.PodIPs) > 0 {
				return p, nil
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("finding own Pod: %w: %s is unset and Pod %s/%s, named like the hostname, has published no IP in %s to prove it is this Pod; %s",
				ErrPodNameUnknown, PodNameEnv, pod.Namespace, pod.Name, podIPWait, downwardAPIHint)
		}
	}
}
