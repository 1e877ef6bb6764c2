package harness

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/version"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/kubernetes/fake"
)

// TestServerVersion checks the version StartWith reads from kube-apiserver against LIFELOCK_K8S_VERSION.
func TestServerVersion(t *testing.T) {
	c := fake.NewClientset()
	c.Discovery().(*fakediscovery.FakeDiscovery).FakedServerVersion = &version.Info{GitVersion: "v1.35.4"}
	for _, tc := range []struct {
		want    string
		wantErr string
	}{
		{want: ""},
		{want: "1.35.4"},
		{want: "v1.35.4"},
		{want: "1.37.2", wantErr: "it is v1.35.4, but LIFELOCK_K8S_VERSION=1.37.2 asks for v1.37.2"},
	} {
		got, err := serverVersion(c, tc.want)
		if got != "1.35.4" {
			t.Errorf("want %q: version %q, expected 1.35.4", tc.want, got)
		}
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("want %q: unexpected error %v", tc.want, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("want %q: error %v, expected one containing %q", tc.want, err, tc.wantErr)
		}
	}
}
