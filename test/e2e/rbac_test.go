package e2e

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/lifelock/lifelock/pkg/lifelock"
	"github.com/lifelock/lifelock/test/component"
	"github.com/lifelock/lifelock/test/harness"
)

// shippedRole builds config/rbac, the RBAC component users include, as a kubebuilder project includes it
// (namespace ns, the lock named lockName with the patch its kustomization.yaml documents; with configMap,
// the ConfigMap Role listed in place of the Lease Role, as it says) and returns its lock Role.
func shippedRole(ns string, configMap bool) *rbacv1.Role {
	objs, err := component.Include(harness.RepoRoot(), component.Options{Namespace: ns, LockName: lockName, ConfigMapLock: configMap})
	Expect(err).NotTo(HaveOccurred())
	u, err := component.Find(objs, "Role", "lifelock-leader-election")
	Expect(err).NotTo(HaveOccurred())
	role := &rbacv1.Role{}
	Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, role)).To(Succeed())
	named := 0
	for _, r := range role.Rules {
		for _, n := range r.ResourceNames {
			Expect(n).To(Equal(lockName), "the documented patch names the lock")
			named++
		}
	}
	Expect(named).To(Equal(1), "the Role narrows the lock's rules to its name")
	return role
}

// AddUser needs the control plane's certificate authority, which only the process that started it holds.
var _ = Describe("RBAC", Serial, func() {
	var ns string
	BeforeEach(func(ctx SpecContext) { ns = newNamespace(ctx) })

	// bindUser creates role in ns and binds it to a new user, returning that user's connection.
	bindUser := func(ctx SpecContext, role *rbacv1.Role, user string) {
		Expect(role.Namespace).To(Equal(ns))
		_, err := cp.Client.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		_, err = cp.Client.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: role.Name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
	}

	// leadsAndHandsOver binds role to a new user and runs two candidates as that user: one leads, releases
	// on shutdown (an update of the lock, by name), and the other takes over, with no overlap. It returns
	// the user's connection.
	leadsAndHandsOver := func(ctx SpecContext, role *rbacv1.Role, kind lifelock.Kind, user string) *rest.Config {
		bindUser(ctx, role, user)
		cfg, err := cp.AddUser(user)
		Expect(err).NotTo(HaveOccurred())
		hist := harness.NewHistory()
		podA, podB := newPod(ctx, ns, "a"), newPod(ctx, ns, "b")
		a := startCandidate(ctx, harness.CandidateOptions{LockName: lockName, Pod: podA, History: hist, Config: cfg, Lock: lifelock.Options{Kind: kind}})
		Eventually(a.Elected()).WithTimeout(10 * time.Second).Should(BeClosed())
		b := startCandidate(ctx, harness.CandidateOptions{LockName: lockName, Pod: podB, History: hist, Config: cfg, Lock: lifelock.Options{Kind: kind}})
		Expect(a.Stop(10 * time.Second)).To(Succeed())
		Eventually(b.Elected()).WithTimeout(10 * time.Second).Should(BeClosed())
		Expect(hist.Check()).To(Succeed())
		return cfg
	}

	It("works for a user bound only to config/rbac's Role, which covers no other lock", func(ctx SpecContext) {
		cfg := leadsAndHandsOver(ctx, shippedRole(ns, false), lifelock.KindLease, "candidate-ok")

		// The Role grants the lock's verbs on its name only: another lock is refused at start-up, naming
		// what is missing and the name a rule must list.
		podC := newPod(ctx, ns, "c")
		_, err := cp.NewCandidate(harness.CandidateOptions{LockName: "other-lock", Pod: podC, Config: cfg})
		Expect(err).To(MatchError(lifelock.ErrMissingPermission))
		Expect(err.Error()).To(ContainSubstring(`list leases.coordination.k8s.io "other-lock"`))
		Expect(err.Error()).To(ContainSubstring(`the lock's name "other-lock" in the resourceNames`))
	})

	It("works for a user bound only to config/rbac's ConfigMap Role, which deletes no other ConfigMap", func(ctx SpecContext) {
		cfg := leadsAndHandsOver(ctx, shippedRole(ns, true), lifelock.KindConfigMap, "candidate-cm")
		cs, err := kubernetes.NewForConfig(cfg)
		Expect(err).NotTo(HaveOccurred())
		_, err = cp.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "unrelated"}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		err = cs.CoreV1().ConfigMaps(ns).Delete(ctx, "unrelated", metav1.DeleteOptions{})
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "deleting another ConfigMap: %v", err)
	})

	DescribeTable("names the permission that is missing",
		func(ctx SpecContext, group, resource, verb, want string) {
			role := shippedRole(ns, false)
			found := false
			for i, r := range role.Rules {
				if r.APIGroups[0] == group && r.Resources[0] == resource {
					var verbs []string
					for _, v := range r.Verbs {
						if v != verb {
							verbs = append(verbs, v)
						} else {
							found = true
						}
					}
					role.Rules[i].Verbs = verbs
				}
			}
			Expect(found).To(BeTrue(), "the Lease Role grants %s %s", verb, resource)
			user := "candidate-without-" + verb + "-" + resource
			bindUser(ctx, role, user)
			cfg, err := cp.AddUser(user)
			Expect(err).NotTo(HaveOccurred())
			pod := newPod(ctx, ns, "a")
			_, err = lifelock.New(ctx, cfg, lockName, lifelock.Options{PodName: pod.Name, PodNamespace: ns})
			Expect(err).To(MatchError(lifelock.ErrMissingPermission))
			Expect(err.Error()).To(ContainSubstring(want))
		},
		Entry("watch leases", "coordination.k8s.io", "leases", "watch", "may not watch leases.coordination.k8s.io"),
		Entry("update leases", "coordination.k8s.io", "leases", "update", "may not update leases.coordination.k8s.io"),
		Entry("list pods", "", "pods", "list", "may not list pods"),
		Entry("get pods", "", "pods", "get", "grant verb get on pods"),
	)
})
