package fencing

import (
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/discovery"
)

// ErrNoAdmissionPolicies means the cluster does not serve ValidatingAdmissionPolicy in
// admissionregistration.k8s.io/v1 (Kubernetes before 1.30): the API server cannot fence writes. The
// lock, and the client's local refusal, work as before.
var ErrNoAdmissionPolicies = errors.New("the API server does not serve admissionregistration.k8s.io/v1 validatingadmissionpolicies (Kubernetes 1.30 or later)")

// Supported returns nil when the cluster serves ValidatingAdmissionPolicy and its binding in
// admissionregistration.k8s.io/v1, an error wrapping ErrNoAdmissionPolicies (naming the server's version)
// when it does not, and any other error when discovery fails. Call it once at start-up and log its answer,
// for example:
//
//	if err := fencing.Supported(discovery.NewDiscoveryClientForConfigOrDie(cfg)); err != nil {
//		setupLog.Info("writes are not fenced by the API server; lifelock's lock still works", "reason", err.Error())
//	}
//
// It does not check that the policy is bound: that needs read access to cluster-scoped admission objects,
// which an operator's identity seldom has.
func Supported(d discovery.DiscoveryInterface) error {
	list, err := d.ServerResourcesForGroupVersion("admissionregistration.k8s.io/v1")
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("fencing: discovering admissionregistration.k8s.io/v1: %w", err)
	}
	var policy, binding bool
	if list != nil {
		for _, r := range list.APIResources {
			policy = policy || r.Name == "validatingadmissionpolicies"
			binding = binding || r.Name == "validatingadmissionpolicybindings"
		}
	}
	if policy && binding {
		return nil
	}
	version := "unknown"
	if v, err := d.ServerVersion(); err == nil {
		version = v.GitVersion
	}
	return fmt.Errorf("fencing: Kubernetes %s: %w", version, ErrNoAdmissionPolicies)
}
