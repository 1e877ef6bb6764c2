package fencing_test

import (
	"errors"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/version"
	fakediscovery "k8s.io/client-go/discovery/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/lifelock/lifelock/pkg/fencing"
)

func TestSupported(t *testing.T) {
	d := &fakediscovery.FakeDiscovery{Fake: &clienttesting.Fake{}, FakedServerVersion: &version.Info{GitVersion: "v1.29.4"}}
	err := fencing.Supported(d)
	if !errors.Is(err, fencing.ErrNoAdmissionPolicies) {
		t.Fatalf("no admissionregistration.k8s.io/v1: %v", err)
	}
	if want := "Kubernetes v1.29.4"; !strings.Contains(err.Error(), want) {
		t.Errorf("%v does not name %q", err, want)
	}
	d.Resources = []*metav1.APIResourceList{{GroupVersion: "admissionregistration.k8s.io/v1", APIResources: []metav1.APIResource{
		{Name: "validatingwebhookconfigurations"}, {Name: "validatingadmissionpolicies"},
	}}}
	if err := fencing.Supported(d); !errors.Is(err, fencing.ErrNoAdmissionPolicies) {
		t.Errorf("policies without bindings: %v", err)
	}
	d.Resources[0].APIResources = append(d.Resources[0].APIResources, metav1.APIResource{Name: "validatingadmissionpolicybindings"})
	if err := fencing.Supported(d); err != nil {
		t.Errorf("served: %v", err)
	}
}
