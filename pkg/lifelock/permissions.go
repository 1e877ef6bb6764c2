package lifelock

import (
	"context"
	"fmt"
	"strings"

	"github.com/go-logr/logr"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// permission is one thing the lock does in the API.
type permission struct{ verb, group, resource string }

func (p permission) String() string {
	if p.group == "" {
		return p.verb + " " + p.resource
	}
	return p.verb + " " + p.resource + "." + p.group
}

// requiredPermissions is exactly what the lock calls: config/rbac/role.yaml grants these and no more
// (plus events, for the optional event recorder).
var requiredPermissions = []permission{
	{"list", "coordination.k8s.io", "leases"},
	{"watch", "coordination.k8s.io", "leases"},
	{"create", "coordination.k8s.io", "leases"},
	{"update", "coordination.k8s.io", "leases"},
	{"get", "", "pods"},
	{"list", "", "pods"},
	{"watch", "", "pods"},
}

// checkPermissions asks the API server (SelfSubjectAccessReview) whether this identity may do everything
// the lock needs in namespace, so that a missing rule is one clear error at start-up rather than a retry
// loop later. Where the review itself is not allowed, it logs that and leaves the errors to the calls.
func checkPermissions(ctx context.Context, client kubernetes.Interface, namespace string, log logr.Logger) error {
	var missing []string
	for _, p := range requiredPermissions {
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: namespace, Verb: p.verb, Group: p.group, Resource: p.resource},
		}}
		res, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		if apierrors.IsForbidden(err) || apierrors.IsNotFound(err) {
			log.Info("Cannot review own permissions; a missing one will show as an error from the call that needs it", "err", err)
			return nil
		}
		if err != nil {
			return fmt.Errorf("checking permission to %s: %w", p, err)
		}
		if !res.Status.Allowed {
			missing = append(missing, p.String())
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: this identity may not %s in namespace %q; grant them in the Role bound to it (see config/rbac/role.yaml)",
			ErrMissingPermission, strings.Join(missing, ", "), namespace)
	}
	return nil
}
