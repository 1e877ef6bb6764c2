// Package component builds config/rbac, lifelock's RBAC kustomize Component, the way a project includes it:
// its files copied into the project, the directory listed under components: of the project's
// kustomization, and the lock named with the patch config/rbac/kustomization.yaml documents. The suites use
// it to deploy exactly what users deploy.
package component

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Dir is config/rbac, relative to the repository root.
const Dir = "config/rbac"

// The component's lock Roles: the Lease one it lists, and the ConfigMap one that its kustomization.yaml
// says to list in its place for --leader-elect-lock-kind=configmap.
const (
	LeaseRoleFile     = "lifelock_leader_election_role.yaml"
	ConfigMapRoleFile = "lifelock_leader_election_role_configmap.yaml"
)

// Copy writes the component's files from repo into dir of fs, as a user copies config/rbac into a project.
// With configMapLock, its kustomization.yaml lists the ConfigMap Role in place of the Lease Role.
func Copy(fs filesys.FileSystem, repo, dir string, configMapLock bool) error {
	src := filepath.Join(repo, Dir)
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	if err := fs.MkdirAll(dir); err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if e.Name() == "kustomization.yaml" && configMapLock {
			if b, err = replaceOnce(b, "\n- "+LeaseRoleFile+"\n", "\n- "+ConfigMapRoleFile+"\n"); err != nil {
				return fmt.Errorf("%s/kustomization.yaml: %w", Dir, err)
			}
		}
		if err := fs.WriteFile(filepath.Join(dir, e.Name()), b); err != nil {
			return err
		}
	}
	return nil
}

// LockNamePatch returns the entry of a kustomization's patches: list that names the lock lockName in the
// component's Role, as config/rbac/kustomization.yaml documents it (its commented "patches:" block), with
// the value set to lockName. The entry starts with "- target:" and ends with a newline.
func LockNamePatch(repo, lockName string) (string, error) {
	entry, err := DocumentedPatch(repo)
	if err != nil {
		return "", err
	}
	value := regexp.MustCompile(`(?m)^(\s*value: ).*$`)
	if n := len(value.FindAllString(entry, -1)); n != 1 {
		return "", fmt.Errorf("%s/kustomization.yaml: the documented patch has %d values, want 1", Dir, n)
	}
	return value.ReplaceAllString(entry, "${1}"+lockName), nil
}

// DocumentedPatch returns the patch entry config/rbac/kustomization.yaml documents in its comment, with
// the comment marks removed and its example value.
func DocumentedPatch(repo string) (string, error) {
	b, err := os.ReadFile(filepath.Join(repo, Dir, "kustomization.yaml"))
	if err != nil {
		return "", err
	}
	_, rest, ok := strings.Cut(string(b), "\n# patches:\n")
	if !ok {
		return "", fmt.Errorf("%s/kustomization.yaml documents no patches: block", Dir)
	}
	var entry strings.Builder
	for line := range strings.Lines(rest) {
		text, ok := strings.CutPrefix(line, "# ")
		if !ok {
			break
		}
		entry.WriteString(text)
	}
	if !strings.HasPrefix(entry.String(), "- target:\n") {
		return "", fmt.Errorf("%s/kustomization.yaml: the documented patch does not start with \"- target:\"", Dir)
	}
	return entry.String(), nil
}

// Build runs kustomize (krusty, what `kustomize build` runs) on the kustomization in dir of fs and returns
// the objects it renders.
func Build(fs filesys.FileSystem, dir string) ([]*unstructured.Unstructured, error) {
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fs, dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	var objs []*unstructured.Unstructured
	for _, r := range m.Resources() {
		b, err := r.MarshalJSON()
		if err != nil {
			return nil, err
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(b); err != nil {
			return nil, fmt.Errorf("kustomize build %s: %s: %w", dir, r.CurId(), err)
		}
		objs = append(objs, u)
	}
	return objs, nil
}

// Options says how Include includes the component.
type Options struct {
	Namespace     string // the including kustomization's namespace:
	NamePrefix    string // and namePrefix:
	LockName      string // the lock the documented patch names; empty: no patch, the component's own name
	ConfigMapLock bool   // list the ConfigMap Role in place of the Lease Role
}

// Include builds the component as a kubebuilder project includes it: copied into config/lifelock (in
// memory), listed under components: by config/default/kustomization.yaml, which sets o's namespace and
// namePrefix, holds kubebuilder's ServiceAccount (controller-manager in namespace system) and names the
// lock with the documented patch. It returns the rendered objects.
func Include(repo string, o Options) ([]*unstructured.Unstructured, error) {
	fs := filesys.MakeFsInMemory()
	if err := Copy(fs, repo, "/project/config/lifelock", o.ConfigMapLock); err != nil {
		return nil, err
	}
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
	if o.Namespace != "" {
		k += "namespace: " + o.Namespace + "\n"
	}
	if o.NamePrefix != "" {
		k += "namePrefix: " + o.NamePrefix + "\n"
	}
	k += "resources:\n- service_account.yaml\ncomponents:\n- ../lifelock\n"
	if o.LockName != "" {
		patch, err := LockNamePatch(repo, o.LockName)
		if err != nil {
			return nil, err
		}
		k += "patches:\n" + patch
	}
	const serviceAccount = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: controller-manager\n  namespace: system\n"
	for name, content := range map[string]string{"kustomization.yaml": k, "service_account.yaml": serviceAccount} {
		if err := fs.WriteFile("/project/config/default/"+name, []byte(content)); err != nil {
			return nil, err
		}
	}
	return Build(fs, "/project/config/default")
}

// ExampleRBAC renders examples/manager's kustomization (with config/rbac as its component) into namespace
// ns, as an overlay with namespace: ns and nameSuffix: -<ns> would, so that several namespaces of one
// cluster get distinct ClusterRoles. It returns the name of the ServiceAccount the manager runs as and the
// objects to create before its Pods (all but the Deployment).
func ExampleRBAC(repo, ns string) (serviceAccount string, objs []*unstructured.Unstructured, err error) {
	fs := filesys.MakeFsInMemory()
	for _, dir := range []string{"examples/manager", Dir} {
		entries, err := os.ReadDir(filepath.Join(repo, dir))
		if err != nil {
			return "", nil, err
		}
		for _, e := range entries {
			if e.IsDir() || !strings.HasSuffix(e.Name(), ".yaml") {
				continue
			}
			b, err := os.ReadFile(filepath.Join(repo, dir, e.Name()))
			if err != nil {
				return "", nil, err
			}
			if err := fs.WriteFile(filepath.Join("/repo", dir, e.Name()), b); err != nil {
				return "", nil, err
			}
		}
	}
	overlay := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: " + ns +
		"\nnameSuffix: -" + ns + "\nresources:\n- ../repo/examples/manager\n"
	if err := fs.WriteFile("/overlay/kustomization.yaml", []byte(overlay)); err != nil {
		return "", nil, err
	}
	all, err := Build(fs, "/overlay")
	if err != nil {
		return "", nil, err
	}
	for _, o := range all {
		if o.GetKind() == "Deployment" {
			serviceAccount, _, _ = unstructured.NestedString(o.Object, "spec", "template", "spec", "serviceAccountName")
			continue
		}
		objs = append(objs, o)
	}
	if serviceAccount == "" {
		return "", nil, errors.New("examples/manager deploys no Deployment with a serviceAccountName")
	}
	return serviceAccount, objs, nil
}

// Find returns the one object of kind whose name ends in name (kustomize may have prefixed it).
func Find(objs []*unstructured.Unstructured, kind, name string) (*unstructured.Unstructured, error) {
	var found *unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind && strings.HasSuffix(o.GetName(), name) {
			if found != nil {
				return nil, fmt.Errorf("two %s objects named *%s: %s and %s", kind, name, found.GetName(), o.GetName())
			}
			found = o
		}
	}
	if found == nil {
		return nil, fmt.Errorf("no %s named *%s", kind, name)
	}
	return found, nil
}

func replaceOnce(b []byte, old, replacement string) ([]byte, error) {
	if n := bytes.Count(b, []byte(old)); n != 1 {
		return nil, fmt.Errorf("expected %q once, found it %d times", strings.TrimSpace(old), n)
	}
	return bytes.Replace(b, []byte(old), []byte(replacement), 1), nil
}
