package e2e

import (
	"os"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/lifelock/lifelock/pkg/lifelock"
	"github.com/lifelock/lifelock/test/harness"
)

// shippedRole reads config/rbac/role.yaml, the Role users deploy.
func shippedRole() *rbacv1.Role {
	b, err := os.ReadFile("../../config/rbac/role.yaml")
	Expect(err).NotTo(HaveOccurred())
	role := &rbacv1.Role{}
	Expect(yaml.UnmarshalStrict(b, role)).To(Succeed())
	return role
}

var _ = Describe("RBAC", func() {
	var ns string
	BeforeEach(func(ctx SpecContext) { ns = newNamespace(ctx) })

	// bindUser creates role in ns and binds it to a new user, returning that user's connection.
	bindUser := func(ctx SpecContext, role *rbacv1.Role, user string) {
		role.Namespace = ns
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
	leadsAndHandsOver := func(ctx SpecContext, role *rbacv1.Role, user string) *rest.Config {
		bindUser(ctx, role, user)
		cfg, err := cp.AddUser(user)
		Expect(err).NotTo(HaveOccurred())
		hist := harness.NewHistory()
		podA, podB := newPod(ctx, ns, "a"), newPod(ctx, ns, "b")
		a := startCandidate(ctx, harness.CandidateOptions{LockName: lockName, Pod: podA, History: hist, Config: cfg})
		Eventually(a.Elected()).WithTimeout(10 * time.Second).Should(BeClosed())
		b := startCandidate(ctx, harness.CandidateOptions{LockName: lockName, Pod: podB, History: hist, Config: cfg})
		Expect(a.Stop(10 * time.Second)).To(Succeed())
		Eventually(b.Elected()).WithTimeout(10 * time.Second).Should(BeClosed())
		Expect(hist.Check()).To(Succeed())
		return cfg
	}

	It("works for a user bound only to config/rbac's Role", func(ctx SpecContext) {
		leadsAndHandsOver(ctx, shippedRole(), "candidate-ok")
	})

	It("works for a least-privilege Role that grants the lock's own verbs on its name only", func(ctx SpecContext) {
		// Everything but create names the lock: list and watch carry a metadata.name field selector, and
		// the writes are on the object. A create has no name to authorize.
		role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "narrow"}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"create"}},
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, ResourceNames: []string{lockName}, Verbs: []string{"list", "watch", "update"}},
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
		}}
		cfg := leadsAndHandsOver(ctx, role, "candidate-narrow")

		// The same Role does not cover another lock name: refused at start-up, naming what is missing.
		podC := newPod(ctx, ns, "c")
		_, err := cp.NewCandidate(harness.CandidateOptions{LockName: "other-lock", Pod: podC, Config: cfg})
		Expect(err).To(MatchError(lifelock.ErrMissingPermission))
		Expect(err.Error()).To(ContainSubstring("list leases.coordination.k8s.io"))
	})

	DescribeTable("names the permission that is missing",
		func(ctx SpecContext, group, resource, verb, want string) {
			role := shippedRole()
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
			Expect(found).To(BeTrue(), "role.yaml grants %s %s", verb, resource)
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
