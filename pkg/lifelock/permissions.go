package lifelock

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/go-logr/logr"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// permission is one thing the lock does in the API. named: the request carries the lock's name (a write
// of the lock, or a list or watch narrowed to it by a metadata.name field selector), so a Role may grant it
// with resourceNames: [<lock>].
type permission struct {
	verb, group, resource string
	named                 bool
}

func (p permission) String() string {
	if p.group == "" {
		return p.verb + " " + p.resource
	}
	return p.verb + " " + p.resource + "." + p.group
}

// podPermissions, with the lock kind's own (store.permissions), are exactly what the lock calls: the kind's
// Role (config/rbac/lifelock_leader_election_role.yaml, or lifelock_leader_election_role_configmap.yaml)
// grants these and no more, plus events.
var podPermissions = []permission{
	{verb: "get", resource: "pods"},
	{verb: "list", resource: "pods"},
	{verb: "watch", resource: "pods"},
}

// nodePermissions are what the stuck-holder diagnosis and the out-of-service policy read: the holder's Node
// (cluster-scoped, so a ClusterRole grants them; config/rbac/lifelock_node_reader_role.yaml).
var nodePermissions = []permission{
	{verb: "get", resource: "nodes"},
	{verb: "list", resource: "nodes"},
	{verb: "watch", resource: "nodes"},
}

// checkPermissions asks the API server (SelfSubjectAccessReview) whether this identity may do everything
// the lock needs in namespace (the kind's permissions and podPermissions), so that a missing rule is one
// clear error at start-up rather than a retry loop later. It also reports whether Nodes may be read; that
// is required only when needNodes (the out-of-service policy), and otherwise turns the stuck-holder
// diagnosis of Nodes off, saying so once. Where the review itself is not allowed, it logs that and leaves
// the errors to the calls.
func checkPermissions(ctx context.Context, client kubernetes.Interface, namespace, lockName string, kind store, needNodes bool, log logr.Logger) (nodes bool, err error) {
	missing, err := reviewPermissions(ctx, client, namespace, lockName, append(kind.permissions(), podPermissions...))
	if errors.Is(err, errCannotReview) {
		log.V(1).Info("Cannot review own permissions; a missing one will show as an error from the call that needs it", "err", err)
		return needNodes, nil
	}
	if err != nil {
		return false, err
	}
	if len(missing) > 0 {
		return false, fmt.Errorf("%w: this identity may not %s in namespace %q; grant them in the Role bound to it, "+
			"with the lock's name %q in the resourceNames of a rule that lists any (see %s)",
			ErrMissingPermission, strings.Join(missing, ", "), namespace, lockName, kind.roleFile())
	}
	missingNodes, err := reviewPermissions(ctx, client, "", "", nodePermissions)
	if err != nil && !errors.Is(err, errCannotReview) {
		return false, err
	}
	switch {
	case len(missingNodes) == 0:
		return true, nil
	case needNodes:
		return false, fmt.Errorf("%w: TakeOverFromOutOfServiceNodes reads the holder's Node, but this identity may not %s; "+
			"grant them in a ClusterRole bound to it (see config/rbac/lifelock_node_reader_role.yaml)", ErrMissingPermission, strings.Join(missingNodes, ", "))
	}
	log.Info("Nodes cannot be read: a holder on a NotReady Node will not be diagnosed (only a Pod stuck terminating will); "+
		"to enable it, grant get, list and watch on nodes in a ClusterRole (see config/rbac/lifelock_node_reader_role.yaml)", "missing", strings.Join(missingNodes, ", "))
	return false, nil
}

var errCannotReview = errors.New("cannot review own permissions")

// reviewPermissions returns those of perms that this identity lacks in namespace ("" for cluster scope);
// a named permission is reviewed for the object lockName, as its requests are authorized.
func reviewPermissions(ctx context.Context, client kubernetes.Interface, namespace, lockName string, perms []permission) ([]string, error) {
	var missing []string
	for _, p := range perms {
		attrs := &authorizationv1.ResourceAttributes{Namespace: namespace, Verb: p.verb, Group: p.group, Resource: p.resource}
		if p.named {
			attrs.Name = lockName
		}
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: attrs}}
		res, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		if apierrors.IsForbidden(err) || apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("%w: %w", errCannotReview, err)
		}
		if err != nil {
			return nil, fmt.Errorf("checking permission to %s: %w", p, err)
		}
		if !res.Status.Allowed {
			if p.named {
				missing = append(missing, fmt.Sprintf("%s %q", p, lockName))
			} else {
				missing = append(missing, p.String())
			}
		}
	}
	return missing, nil
}
