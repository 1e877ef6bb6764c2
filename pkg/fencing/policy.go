package fencing

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"

	"github.com/lifelock/lifelock/pkg/lifelock"
)

// PolicyOptions describes what Policy fences: whose writes, to which resources, against which lock.
type PolicyOptions struct {
	// LockName and LockNamespace name the lock object (the LeaderElectionID and the Pods' namespace).
	LockName, LockNamespace string
	// Kind is the lock's kind (lifelock.Options.Kind). Default: a Lease.
	Kind lifelock.Kind
	// User is the user name whose writes are fenced: the operator's, for a ServiceAccount
	// ServiceAccountUser(namespace, name). Writes by anyone else pass unchecked.
	User string
	// Resources are the resources the operator writes, by group and plural name ("" for the core group:
	// {Group: "", Resource: "configmaps"}, {Group: "apps", Resource: "deployments"}). Every version is
	// matched. Subresources ("deployments/status") and events are refused: a status write's stamp is not
	// what the policy sees, and the lock's own Events are written unstamped.
	Resources []schema.GroupResource
	// Namespaces are the namespaces whose objects are fenced. Default: the lock's namespace only.
	// AllNamespaces fences the resources in every namespace, and cluster-scoped ones.
	Namespaces    []string
	AllNamespaces bool
	// Name names the policy and its binding (both cluster-scoped). Default:
	// "lifelock-fencing.<lock namespace>.<lock name>".
	Name string
}

// ServiceAccountUser is the user name a ServiceAccount's tokens authenticate as.
func ServiceAccountUser(namespace, name string) string {
	return "system:serviceaccount:" + namespace + ":" + name
}

// Policy returns a ValidatingAdmissionPolicy and its binding that refuse, before it is stored, every write
// (create, update, patch, delete) by o.User to o.Resources whose stamp (the Annotation of the object
// written; of the object as stored, for a delete) is not the lock's current term, and every such write with
// no stamp. The lock itself is the policy's parameter: the term is its number and UID, and it must have a
// holder and not be marked for deletion; when the lock does not exist, every such write is refused
// (parameterNotFoundAction Deny). The lock object itself is never matched. It needs Kubernetes 1.30 or
// later (Supported).
func Policy(o PolicyOptions) (*admissionregistrationv1.ValidatingAdmissionPolicy, *admissionregistrationv1.ValidatingAdmissionPolicyBinding, error) {
	if o.LockName == "" || o.LockNamespace == "" {
		return nil, nil, errors.New("fencing: the lock's name and namespace are required")
	}
	if o.User == "" {
		return nil, nil, errors.New("fencing: the fenced user is required (ServiceAccountUser)")
	}
	if len(o.Resources) == 0 {
		return nil, nil, errors.New("fencing: no resources to fence")
	}
	kind := o.Kind
	if kind == "" {
		kind = lifelock.KindLease
	}
	var lockGroup, lockResource string
	var paramKind admissionregistrationv1.ParamKind
	switch kind {
	case lifelock.KindLease:
		lockGroup, lockResource = "coordination.k8s.io", "leases"
		paramKind = admissionregistrationv1.ParamKind{APIVersion: "coordination.k8s.io/v1", Kind: "Lease"}
	case lifelock.KindConfigMap:
		lockGroup, lockResource = "", "configmaps"
		paramKind = admissionregistrationv1.ParamKind{APIVersion: "v1", Kind: "ConfigMap"}
	default:
		return nil, nil, fmt.Errorf("fencing: unknown lock kind %q", kind)
	}
	byGroup := map[string][]string{}
	var groups []string
	for _, r := range o.Resources {
		switch {
		case r.Resource == "" || strings.Contains(r.Resource, "/"):
			return nil, nil, fmt.Errorf("fencing: resource %q: give a resource's plural name; subresources are not fenced", r.Resource)
		case r.Resource == "events" && (r.Group == "" || r.Group == "events.k8s.io"):
			return nil, nil, errors.New("fencing: events are not fenced: the lock records its own Events unstamped")
		}
		if _, ok := byGroup[r.Group]; !ok {
			groups = append(groups, r.Group)
		}
		if !slices.Contains(byGroup[r.Group], r.Resource) {
			byGroup[r.Group] = append(byGroup[r.Group], r.Resource)
		}
	}
	slices.Sort(groups)
	ops := []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update, admissionregistrationv1.Delete}
	var rules []admissionregistrationv1.NamedRuleWithOperations
	for _, g := range groups {
		res := byGroup[g]
		slices.Sort(res)
		rules = append(rules, admissionregistrationv1.NamedRuleWithOperations{RuleWithOperations: admissionregistrationv1.RuleWithOperations{
			Operations: ops,
			Rule: admissionregistrationv1.Rule{
				APIGroups: []string{g}, APIVersions: []string{"*"}, Resources: res,
				Scope: ptr.To(admissionregistrationv1.AllScopes),
			},
		}})
	}
	name := o.Name
	if name == "" {
		name = "lifelock-fencing." + o.LockNamespace + "." + o.LockName
	}

	var number, held string
	if kind == lifelock.KindLease {
		number = `has(params.spec.leaseTransitions) ? string(params.spec.leaseTransitions) : "0"`
		held = `has(params.spec.holderIdentity) && params.spec.holderIdentity != "" && !has(params.metadata.deletionTimestamp)`
	} else {
		number = `has(params.metadata.annotations) && ` + strconv.Quote(lifelock.TransitionsAnnotation) + ` in params.metadata.annotations ? params.metadata.annotations[` + strconv.Quote(lifelock.TransitionsAnnotation) + `] : "0"`
		held = `!has(params.metadata.deletionTimestamp)`
	}
	ann := strconv.Quote(Annotation)
	lock := o.LockNamespace + "/" + o.LockName
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/part-of": "lifelock"}},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			ParamKind: &paramKind,
			MatchConstraints: &admissionregistrationv1.MatchResources{
				ResourceRules: rules,
				// The lock is written by lifelock itself, unstamped.
				ExcludeResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
					ResourceNames: []string{o.LockName},
					RuleWithOperations: admissionregistrationv1.RuleWithOperations{
						Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.OperationAll},
						Rule: admissionregistrationv1.Rule{
							APIGroups: []string{lockGroup}, APIVersions: []string{"*"}, Resources: []string{lockResource},
							Scope: ptr.To(admissionregistrationv1.NamespacedScope),
						},
					},
				}},
			},
			MatchConditions: []admissionregistrationv1.MatchCondition{{
				Name:       "fenced-user",
				Expression: "request.userInfo.username == " + strconv.Quote(o.User),
			}},
			FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			Variables: []admissionregistrationv1.Variable{
				{Name: "stamped", Expression: `request.operation == "DELETE" ? oldObject : object`},
				{Name: "stamp", Expression: `has(variables.stamped.metadata.annotations) && ` + ann + ` in variables.stamped.metadata.annotations ? variables.stamped.metadata.annotations[` + ann + `] : ""`},
				{Name: "term", Expression: `(` + number + `) + "/" + params.metadata.uid + "/"`},
				{Name: "held", Expression: held},
			},
			Validations: []admissionregistrationv1.Validation{{
				Expression: `variables.held && variables.stamp.startsWith(variables.term)`,
				MessageExpression: `"lifelock fencing: lock ` + lock + ` is " + (variables.held ? "in term " + variables.term + "*" : "not held") + ` +
					`"; this write is stamped " + (variables.stamp == "" ? "with no term" : "with term " + variables.stamp) + ": refused"`,
				Reason: ptr.To(metav1.StatusReasonForbidden),
			}},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicyBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/part-of": "lifelock"}},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName: name,
			ParamRef: &admissionregistrationv1.ParamRef{
				Name:                    o.LockName,
				Namespace:               o.LockNamespace,
				ParameterNotFoundAction: ptr.To(admissionregistrationv1.DenyAction),
			},
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
		},
	}
	if !o.AllNamespaces {
		ns := o.Namespaces
		if len(ns) == 0 {
			ns = []string{o.LockNamespace}
		}
		binding.Spec.MatchResources = &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpIn, Values: slices.Sorted(slices.Values(ns))}},
		}}
	}
	return policy, binding, nil
}
