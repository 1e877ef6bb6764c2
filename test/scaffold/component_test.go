package scaffold

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/lifelock/lifelock/test/component"
	"github.com/lifelock/lifelock/test/harness/witness"
)

// componentDir is where the README says to copy config/rbac into a kubebuilder project.
const componentDir = "config/lifelock"

// deployedKinds are the kinds of config/default's output this suite applies: what the manager's identity
// and its permissions are made of. The CRDs are installed already; Deployments and Services need a kubelet
// and a network the control plane has not.
var deployedKinds = []string{"Namespace", "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}

// buildWithComponent renders the scaffold's config/default as the README's RBAC section says to change
// it, on an in-memory copy of the project's config/ (the other specs' files stay as they are): lifelock's
// component copied into config/lifelock and listed under components:, the lock named with the documented
// patch, and the scaffold's own leader-election Role and binding dropped from config/rbac.
func buildWithComponent() []*unstructured.Unstructured {
	mem := filesys.MakeFsInMemory()
	root := filepath.Join(proj.dir, "config")
	Expect(filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return mem.WriteFile(filepath.Join("/guestbook", strings.TrimPrefix(path, proj.dir)), b)
	})).To(Succeed())
	Expect(component.Copy(mem, repo, filepath.Join("/guestbook", componentDir), false)).To(Succeed())

	patch, err := component.LockNamePatch(repo, proj.electionID)
	Expect(err).NotTo(HaveOccurred())
	editFile(mem, "/guestbook/config/default/kustomization.yaml", "\npatches:\n",
		"\ncomponents:\n- ../lifelock\n\npatches:\n"+patch)
	editFile(mem, "/guestbook/config/rbac/kustomization.yaml", "- leader_election_role.yaml\n- leader_election_role_binding.yaml\n", "")

	objs, err := component.Build(mem, "/guestbook/config/default")
	Expect(err).NotTo(HaveOccurred())
	return objs
}

// editFile replaces old, which must occur once, with replacement in a file of fs.
func editFile(fs filesys.FileSystem, path, old, replacement string) {
	b, err := fs.ReadFile(path)
	Expect(err).NotTo(HaveOccurred())
	Expect(strings.Count(string(b), old)).To(Equal(1), "%s holds %q once; has kubebuilder's scaffold changed?", path, old)
	Expect(fs.WriteFile(path, []byte(strings.Replace(string(b), old, replacement, 1)))).To(Succeed())
}

// applyDeployedKinds creates the objects of deployedKinds as an administrator would with kubectl apply,
// and deletes the cluster-scoped ones when the spec ends.
func applyDeployedKinds(ctx context.Context, objs []*unstructured.Unstructured) {
	c, err := client.New(cp.Config, client.Options{})
	Expect(err).NotTo(HaveOccurred())
	for _, kind := range deployedKinds { // in this order: a namespace before what lives in it
		for _, o := range objs {
			if o.GetKind() != kind {
				continue
			}
			Expect(c.Create(ctx, o.DeepCopy())).To(Succeed(), "creating %s %s", kind, o.GetName())
			if strings.HasPrefix(kind, "Cluster") {
				DeferCleanup(func(ctx context.Context) { _ = c.Delete(ctx, o.DeepCopy()) })
			}
		}
	}
}

// serviceAccountKubeconfig writes a kubeconfig that authenticates with a token of the ServiceAccount
// ns/name, as its Pod's mounted token would, and returns its path.
func serviceAccountKubeconfig(ctx context.Context, ns, name string) string {
	token, err := cp.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cp.Config.Host, CertificateAuthorityData: cp.Config.CAData}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: token.Status.Token}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: name, Namespace: ns}
	cfg.CurrentContext = name
	path := filepath.Join(GinkgoT().TempDir(), name+".kubeconfig")
	Expect(clientcmd.WriteToFile(*cfg, path)).To(Succeed())
	return path
}

func decodeInto(o *unstructured.Unstructured, into any) {
	Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, into)).To(Succeed())
}

var _ = Describe("A kubebuilder "+kubebuilderVersion+" project deploying lifelock's RBAC component with config/default", func() {
	It("runs the adopted manager as its ServiceAccount under exactly the rules config/default renders: one leads, the other takes over", func(ctx SpecContext) {
		objs := buildWithComponent()

		// What kustomize made of the component: prefixed names, the project's namespace in both bindings'
		// subjects, the lock's name in the Role, and none of the scaffold's leader-election rules.
		namespace, err := component.Find(objs, "Namespace", "system")
		Expect(err).NotTo(HaveOccurred())
		ns := namespace.GetName()
		deployment, err := component.Find(objs, "Deployment", "controller-manager")
		Expect(err).NotTo(HaveOccurred())
		Expect(deployment.GetNamespace()).To(Equal(ns))
		sa, _, _ := unstructured.NestedString(deployment.Object, "spec", "template", "spec", "serviceAccountName")
		want := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: ns}
		var nodeBinding rbacv1.ClusterRoleBinding
		u, err := component.Find(objs, "ClusterRoleBinding", "lifelock-node-reader")
		Expect(err).NotTo(HaveOccurred())
		decodeInto(u, &nodeBinding)
		Expect(nodeBinding.Subjects).To(ConsistOf(want))
		var lockBinding rbacv1.RoleBinding
		u, err = component.Find(objs, "RoleBinding", "lifelock-leader-election")
		Expect(err).NotTo(HaveOccurred())
		decodeInto(u, &lockBinding)
		Expect(lockBinding.Subjects).To(ConsistOf(want))
		Expect(lockBinding.Namespace).To(Equal(ns))
		var role rbacv1.Role
		u, err = component.Find(objs, "Role", "lifelock-leader-election")
		Expect(err).NotTo(HaveOccurred())
		decodeInto(u, &role)
		Expect(role.Rules[1].ResourceNames).To(Equal([]string{proj.electionID}))
		_, err = component.Find(objs, "Role", "leader-election-role")
		Expect(err).To(HaveOccurred(), "the scaffold's leader-election Role is dropped")

		applyDeployedKinds(ctx, objs)
		kubeconfig := serviceAccountKubeconfig(ctx, ns, sa)

		// The identity is bound by those rules only: it may not read the lock with get, which the
		// scaffold's leader-election Role would grant and lifelock's does not.
		restCfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		Expect(err).NotTo(HaveOccurred())
		saClient, err := kubernetes.NewForConfig(restCfg)
		Expect(err).NotTo(HaveOccurred())
		_, err = saClient.CoordinationV1().Leases(ns).Get(ctx, proj.electionID, metav1.GetOptions{})
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "get on the lock as %s: %v", sa, err)

		s := scenarioIn(ctx, ns, kubeconfig)
		a := s.startPod(ctx, sa+"-a", proj.adoptedManager)
		b := s.startPod(ctx, sa+"-b", proj.adoptedManager)
		leader, follower := s.electedOf(electTimeout, a, b)
		s.expectHolder(ctx, leader)
		Consistently(s.acting).WithTimeout(followerPatience).Should(ConsistOf(leader.name))
		Expect(follower.ready()).To(Succeed())
		Expect(follower.proc.Done()).NotTo(BeClosed())

		leader.proc.Kill()
		deleted := witness.Now()
		Expect(cp.DeletePodGracefully(ctx, leader.pod)).To(Succeed())
		Eventually(s.acting).WithTimeout(electTimeout).Should(ConsistOf(follower.name))
		s.expectHolder(ctx, follower)
		Expect(s.history().Check()).To(Succeed())
		AddReportEntry("component RBAC: failover as the ServiceAccount "+ns+"/"+sa, (s.startOf(follower.name) - deleted).Round(time.Millisecond).String())
	})
})
