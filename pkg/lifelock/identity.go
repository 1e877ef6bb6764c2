package lifelock

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	Namespace string
	Name      string
	UID       string
}

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
		return PodRef{}, fmt.Errorf("finding own Pod %s/%s: %w: grant verb get on pods in namespace %q (see config/rbac/role.yaml): %w",
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
