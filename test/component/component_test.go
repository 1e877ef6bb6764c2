package component

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

const repo = "../.."

// What controller-gen and kubebuilder write into a project's config/rbac; the component's files and objects
// must not collide with them when copied next to it or built with it.
var (
	scaffoldFiles = []string{"role.yaml", "role_binding.yaml", "service_account.yaml", "leader_election_role.yaml",
		"leader_election_role_binding.yaml", "metrics_auth_role.yaml", "metrics_auth_role_binding.yaml", "metrics_reader_role.yaml"}
	scaffoldNames = []string{"manager-role", "manager-rolebinding", "controller-manager", "leader-election-role",
		"leader-election-rolebinding", "metrics-auth-role", "metrics-auth-rolebinding", "metrics-reader"}
)

func TestIsAComponentWithoutScaffoldNames(t *testing.T) {
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
	}
	b, err := os.ReadFile(filepath.Join(repo, Dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1alpha1" || k.Kind != "Component" {
		t.Errorf("%s/kustomization.yaml is %s %s, want a kustomize.config.k8s.io/v1alpha1 Component", Dir, k.APIVersion, k.Kind)
	}
	entries, err := os.ReadDir(filepath.Join(repo, Dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "kustomization.yaml" {
			continue
		}
		if slices.Contains(scaffoldFiles, e.Name()) || !strings.HasPrefix(e.Name(), "lifelock_") {
			t.Errorf("%s/%s: name the component's files lifelock_*, apart from a kubebuilder project's config/rbac files", Dir, e.Name())
		}
	}
	objs, err := Include(repo, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() == "ServiceAccount" { // the including kustomization's own
			continue
		}
		if slices.Contains(scaffoldNames, o.GetName()) || !strings.HasPrefix(o.GetName(), "lifelock-") {
			t.Errorf("%s %s: name the component's objects lifelock-*, apart from a kubebuilder project's", o.GetKind(), o.GetName())
		}
	}
}

// In a kubebuilder project's config/default, kustomize gives both bindings the prefixed ServiceAccount and
// the project's namespace, and the documented patch names the lock in either Role.
func TestIncludedInAKubebuilderProject(t *testing.T) {
	const (
		ns       = "guestbook-system"
		prefix   = "guestbook-"
		lockName = "8ee5c1b0.example.com"
	)
	for _, tc := range []struct {
		configMapLock bool
		group, res    string
		namedVerbs    []string
	}{
		{false, "coordination.k8s.io", "leases", []string{"list", "watch", "update"}},
		{true, "", "configmaps", []string{"list", "watch", "patch", "delete"}},
	} {
		t.Run(tc.res, func(t *testing.T) {
			objs, err := Include(repo, Options{Namespace: ns, NamePrefix: prefix, LockName: lockName, ConfigMapLock: tc.configMapLock})
			if err != nil {
				t.Fatal(err)
			}
			var role rbacv1.Role
			decode(t, objs, "Role", "lifelock-leader-election", &role)
			if role.Name != prefix+"lifelock-leader-election" || role.Namespace != ns {
				t.Errorf("Role %s/%s, want %s/%slifelock-leader-election", role.Namespace, role.Name, ns, prefix)
			}
			// The lock's object: create unnarrowed (a create names nothing), every other verb on its name only.
			var create, named []rbacv1.PolicyRule
			for _, r := range role.Rules {
				if slices.Contains(r.Resources, tc.res) {
					if len(r.ResourceNames) == 0 {
						create = append(create, r)
					} else {
						named = append(named, r)
					}
				}
			}
			if len(create) != 1 || !slices.Equal(create[0].Verbs, []string{"create"}) || !slices.Equal(create[0].APIGroups, []string{tc.group}) {
				t.Errorf("unnarrowed %s rules %v, want one with create only", tc.res, create)
			}
			if len(named) != 1 || !slices.Equal(named[0].ResourceNames, []string{lockName}) || !slices.Equal(named[0].Verbs, tc.namedVerbs) {
				t.Errorf("named %s rules %v, want one with %v on [%s]", tc.res, named, tc.namedVerbs, lockName)
			}

			want := rbacv1.Subject{Kind: "ServiceAccount", Name: prefix + "controller-manager", Namespace: ns}
			var binding rbacv1.RoleBinding
			decode(t, objs, "RoleBinding", "lifelock-leader-election", &binding)
			if !slices.Equal(binding.Subjects, []rbacv1.Subject{want}) || binding.RoleRef.Name != role.Name {
				t.Errorf("RoleBinding binds %s to %v, want %s to %v", binding.RoleRef.Name, binding.Subjects, role.Name, want)
			}
			var nodeBinding rbacv1.ClusterRoleBinding
			decode(t, objs, "ClusterRoleBinding", "lifelock-node-reader", &nodeBinding)
			if !slices.Equal(nodeBinding.Subjects, []rbacv1.Subject{want}) || nodeBinding.RoleRef.Name != prefix+"lifelock-node-reader" {
				t.Errorf("ClusterRoleBinding binds %s to %v, want %slifelock-node-reader to %v", nodeBinding.RoleRef.Name, nodeBinding.Subjects, prefix, want)
			}
		})
	}
}

// examples/manager deploys with the component: its Deployment runs as the ServiceAccount both bindings
// name, in their namespace, and the Role names the example's lock without a patch.
func TestExampleDeployment(t *testing.T) {
	objs, err := Build(filesys.MakeFsOnDisk(), filepath.Join(repo, "examples", "manager"))
	if err != nil {
		t.Fatal(err)
	}
	deployment, err := Find(objs, "Deployment", "manager")
	if err != nil {
		t.Fatal(err)
	}
	sa, _, _ := unstructured.NestedString(deployment.Object, "spec", "template", "spec", "serviceAccountName")
	want := rbacv1.Subject{Kind: "ServiceAccount", Name: sa, Namespace: deployment.GetNamespace()}
	if sa == "" || want.Namespace == "" {
		t.Fatalf("the example's Deployment names ServiceAccount %q in namespace %q", sa, want.Namespace)
	}
	if _, err := Find(objs, "ServiceAccount", sa); err != nil {
		t.Error(err)
	}
	var binding rbacv1.RoleBinding
	decode(t, objs, "RoleBinding", "lifelock-leader-election", &binding)
	var nodeBinding rbacv1.ClusterRoleBinding
	decode(t, objs, "ClusterRoleBinding", "lifelock-node-reader", &nodeBinding)
	for _, subjects := range [][]rbacv1.Subject{binding.Subjects, nodeBinding.Subjects} {
		if !slices.Equal(subjects, []rbacv1.Subject{want}) {
			t.Errorf("a binding names %v, want %v", subjects, want)
		}
	}
	var role rbacv1.Role
	decode(t, objs, "Role", "lifelock-leader-election", &role)
	main, err := os.ReadFile(filepath.Join(repo, "examples", "manager", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range role.Rules {
		for _, name := range r.ResourceNames {
			if !regexp.MustCompile(`LeaderElectionID:\s+"` + regexp.QuoteMeta(name) + `"`).Match(main) {
				t.Errorf("the Role names lock %q, which is not examples/manager's LeaderElectionID", name)
			}
		}
	}
}

func decode(t *testing.T, objs []*unstructured.Unstructured, kind, name string, into any) {
	t.Helper()
	o, err := Find(objs, kind, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, into); err != nil {
		t.Fatal(err)
	}
}

// ExampleRBAC gives each namespace its own objects, bound to the ServiceAccount the Deployment runs as.
func TestExampleRBACPerNamespace(t *testing.T) {
	names := map[string]bool{}
	for _, ns := range []string{"node-a", "node-b"} {
		sa, objs, err := ExampleRBAC(repo, ns)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Find(objs, "ServiceAccount", sa); err != nil {
			t.Error(err)
		}
		want := rbacv1.Subject{Kind: "ServiceAccount", Name: sa, Namespace: ns}
		var nodeBinding rbacv1.ClusterRoleBinding
		decode(t, objs, "ClusterRoleBinding", "lifelock-node-reader-"+ns, &nodeBinding)
		if !slices.Equal(nodeBinding.Subjects, []rbacv1.Subject{want}) {
			t.Errorf("%s: the Node reader binds %v, want %v", ns, nodeBinding.Subjects, want)
		}
		for _, o := range objs {
			if o.GetKind() == "Deployment" {
				t.Errorf("%s: ExampleRBAC returns the Deployment", ns)
			}
			if o.GetNamespace() == "" { // cluster-scoped
				if names[o.GetKind()+"/"+o.GetName()] {
					t.Errorf("%s %s is rendered for two namespaces", o.GetKind(), o.GetName())
				}
				names[o.GetKind()+"/"+o.GetName()] = true
			} else if o.GetNamespace() != ns {
				t.Errorf("%s %s is in namespace %q, want %q", o.GetKind(), o.GetName(), o.GetNamespace(), ns)
			}
		}
	}
}
