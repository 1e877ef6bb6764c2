package component_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/lifelock/lifelock/pkg/fencing"
	"github.com/lifelock/lifelock/test/component"
	"github.com/lifelock/lifelock/test/harness"
)

// TestFencingComponent includes config/fencing as its kustomization.yaml says (copied into a kubebuilder
// project, listed under components: by config/default, which sets the scaffold's namespace and namePrefix),
// with the patches it documents, and checks that the result is what fencing.Policy generates for the lock,
// ServiceAccount and resources those patches name.
func TestFencingComponent(t *testing.T) {
	repo := harness.RepoRoot()
	fs := filesys.MakeFsInMemory()
	src := filepath.Join(repo, "config", "fencing")
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	var documented string
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := fs.WriteFile("/project/config/lifelock-fencing/"+e.Name(), b); err != nil {
			t.Fatal(err)
		}
		if e.Name() == "kustomization.yaml" {
			documented = documentedPatches(t, string(b))
		}
	}
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: guestbook-system\nnamePrefix: guestbook-\n" +
		"components:\n- ../lifelock-fencing\npatches:\n" + documented
	if err := fs.WriteFile("/project/config/default/kustomization.yaml", []byte(k)); err != nil {
		t.Fatal(err)
	}
	objs, err := component.Build(fs, "/project/config/default")
	if err != nil {
		t.Fatal(err)
	}
	wantPolicy, wantBinding, err := fencing.Policy(fencing.PolicyOptions{
		LockName:      "8ee5c1b0.example.com",
		LockNamespace: "guestbook-system",
		User:          fencing.ServiceAccountUser("guestbook-system", "guestbook-controller-manager"),
		Resources:     []schema.GroupResource{{Resource: "configmaps"}, {Group: "apps", Resource: "deployments"}},
		Name:          "guestbook-lifelock-fencing",
	})
	if err != nil {
		t.Fatal(err)
	}
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
	convert(t, find(t, objs, "ValidatingAdmissionPolicy"), policy)
	convert(t, find(t, objs, "ValidatingAdmissionPolicyBinding"), binding)
	if policy.Name != wantPolicy.Name || binding.Name != wantBinding.Name || binding.Spec.PolicyName != policy.Name {
		t.Errorf("names: policy %q, binding %q for %q; want %q", policy.Name, binding.Name, binding.Spec.PolicyName, wantPolicy.Name)
	}
	// The refusal's message names the lock the component was generated for; only the message may differ.
	policy.Spec.Validations[0].MessageExpression = wantPolicy.Spec.Validations[0].MessageExpression
	if !equality.Semantic.DeepEqual(policy.Spec, wantPolicy.Spec) {
		t.Errorf("the policy is not fencing.Policy's:\n got %+v\nwant %+v", policy.Spec, wantPolicy.Spec)
	}
	if !equality.Semantic.DeepEqual(binding.Spec, wantBinding.Spec) {
		t.Errorf("the binding is not fencing.Policy's:\n got %+v\nwant %+v", binding.Spec, wantBinding.Spec)
	}
}

// documentedPatches returns the patches: entries the kustomization's comment documents, comment marks removed.
func documentedPatches(t *testing.T, kustomization string) string {
	t.Helper()
	_, rest, ok := strings.Cut(kustomization, "\n# patches:\n")
	if !ok {
		t.Fatal("config/fencing/kustomization.yaml documents no patches: block")
	}
	var b strings.Builder
	for line := range strings.Lines(rest) {
		text, ok := strings.CutPrefix(line, "# ")
		if !ok {
			break
		}
		b.WriteString(text)
	}
	return b.String()
}

func find(t *testing.T, objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind {
			return o
		}
	}
	t.Fatalf("no %s rendered", kind)
	return nil
}

func convert(t *testing.T, u *unstructured.Unstructured, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into); err != nil {
		t.Fatal(err)
	}
}
