package fencing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/lifelock/lifelock/pkg/lifelock"
)

// Annotation is the annotation that carries a write's stamp: the term (lifelock.Term.String) of the leader
// that wrote the object, "<number>/<lock UID>/<revision>".
const Annotation = "lifelock.dev/term"

// ErrUnsupported is returned, before anything is sent, for a write the client cannot stamp: a JSON patch
// (RFC 6902; use a merge patch or server-side apply), a collection delete (DeleteAllOf), a patch whose body
// is not a JSON object.
var ErrUnsupported = errors.New("fencing: this write cannot be stamped")

// Fencer gives the term to stamp on a write, or an error when this process must not write.
// *lifelock.Lock is one (manageropts.LockOf hands a manager's lock to its controllers).
type Fencer interface {
	Fence() (lifelock.Term, error)
}

// Stamp sets obj's Annotation to the term f leads in, for a create or an update. It returns f's error,
// wrapped, and leaves obj unchanged when this process must not write: send nothing then.
func Stamp(obj metav1.Object, f Fencer) error {
	t, err := fence(f)
	if err != nil {
		return err
	}
	setStamp(obj, t)
	return nil
}

func fence(f Fencer) (lifelock.Term, error) {
	t, err := f.Fence()
	if err != nil {
		return t, fmt.Errorf("fencing: not writing: %w", err)
	}
	if t.IsZero() {
		// manageropts' Fence in lease mode: nothing to stamp, and a policy bound to a lock would refuse it.
		return t, fmt.Errorf("fencing: not writing: %w: no term to stamp (not a life-mode lock)", lifelock.ErrNotLeading)
	}
	return t, nil
}

func setStamp(obj metav1.Object, t lifelock.Term) {
	a := obj.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	a[Annotation] = t.String()
	obj.SetAnnotations(a)
}

// StampPatch returns the body of a patch of type pt with the term's stamp added, so that the object the
// patch produces carries it whatever the patch held: for a merge patch, a strategic merge patch or a
// server-side apply patch (a JSON object). A JSON patch (RFC 6902) is refused with ErrUnsupported: it cannot
// add an annotation to an object that has none without replacing the others.
func StampPatch(pt types.PatchType, data []byte, t lifelock.Term) ([]byte, error) {
	switch pt {
	case types.MergePatchType, types.StrategicMergePatchType, types.ApplyPatchType, types.ApplyCBORPatchType:
	default:
		return nil, fmt.Errorf("%w: patch type %s (use a merge patch or server-side apply)", ErrUnsupported, pt)
	}
	if pt == types.ApplyCBORPatchType {
		return nil, fmt.Errorf("%w: a CBOR apply patch (use JSON)", ErrUnsupported)
	}
	var body map[string]any
	if len(data) == 0 {
		body = map[string]any{}
	} else if err := json.Unmarshal(data, &body); err != nil || body == nil {
		return nil, fmt.Errorf("%w: the patch is not a JSON object: %w", ErrUnsupported, err)
	}
	meta, _ := body["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		body["metadata"] = meta
	}
	ann, _ := meta["annotations"].(map[string]any)
	if ann == nil {
		ann = map[string]any{}
		meta["annotations"] = ann
	}
	ann[Annotation] = t.String()
	return json.Marshal(body)
}

// StampedDelete deletes an object so that the policy can fence the delete: stamp patches the object with a
// merge patch (the body given) and returns its UID and resourceVersion after that patch; del deletes it with
// the options given, which carry those as preconditions. Between the two, a write by anyone else makes del
// fail with a conflict. For client-go's typed clients:
//
//	err := fencing.StampedDelete(ctx, lock,
//		func(ctx context.Context, patch []byte) (metav1.Object, error) {
//			return cs.CoreV1().ConfigMaps(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
//		},
//		func(ctx context.Context, opts metav1.DeleteOptions) error {
//			return cs.CoreV1().ConfigMaps(ns).Delete(ctx, name, opts)
//		})
func StampedDelete(ctx context.Context, f Fencer,
	stamp func(ctx context.Context, mergePatch []byte) (metav1.Object, error),
	del func(ctx context.Context, opts metav1.DeleteOptions) error,
) error {
	t, err := fence(f)
	if err != nil {
		return err
	}
	patch, err := StampPatch(types.MergePatchType, nil, t)
	if err != nil {
		return err
	}
	o, err := stamp(ctx, patch)
	if err != nil {
		return err
	}
	uid, rv := o.GetUID(), o.GetResourceVersion()
	return del(ctx, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid, ResourceVersion: &rv}})
}

// NewClient returns a client that stamps every write c makes with the term f leads in, and sends nothing
// when f refuses (the error wraps f's: lifelock.ErrNotLeading, ErrLockLost, ErrReleased). Reads go to c
// unchanged. A reconciler changes one line:
//
//	lock, _ := manageropts.LockOf(mgr)
//	r := &Reconciler{Client: fencing.NewClient(mgr.GetClient(), lock)}
//
// Create and Update set the Annotation on the object; Patch adds it to the patch's body (a JSON patch is
// refused with ErrUnsupported); Apply adds it to the apply configuration; Delete is StampedDelete: a merge
// patch of the stamp, then the delete with that version as a precondition (preconditions the caller passes
// are replaced); DeleteAllOf is refused with ErrUnsupported. Writes to subresources (Status, SubResource)
// ask f first and send nothing on an error, but carry no stamp: the policy does not check them.
func NewClient(c client.Client, f Fencer) client.Client {
	return &fencedClient{Client: c, f: f}
}

type fencedClient struct {
	client.Client
	f Fencer
}

func (c *fencedClient) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	if err := Stamp(obj, c.f); err != nil {
		return err
	}
	return c.Client.Create(ctx, obj, opts...)
}

func (c *fencedClient) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	if err := Stamp(obj, c.f); err != nil {
		return err
	}
	return c.Client.Update(ctx, obj, opts...)
}

func (c *fencedClient) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	t, err := fence(c.f)
	if err != nil {
		return err
	}
	p, err := stampedPatch(patch, obj, t)
	if err != nil {
		return err
	}
	return c.Client.Patch(ctx, obj, p, opts...)
}

// stampedPatch computes patch's body for obj now and returns it stamped.
func stampedPatch(patch client.Patch, obj client.Object, t lifelock.Term) (client.Patch, error) {
	data, err := patch.Data(obj)
	if err != nil {
		return nil, err
	}
	data, err = StampPatch(patch.Type(), data, t)
	if err != nil {
		return nil, err
	}
	return client.RawPatch(patch.Type(), data), nil
}

func (c *fencedClient) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
	t, err := fence(c.f)
	if err != nil {
		return err
	}
	u, err := stampedApply(obj, t)
	if err != nil {
		return err
	}
	if err := c.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), opts...); err != nil {
		return err
	}
	// Hand the result back in the caller's apply configuration, as the client it wraps does.
	b, err := json.Marshal(u.Object)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, obj)
}

func stampedApply(obj runtime.ApplyConfiguration, t lifelock.Term) (*unstructured.Unstructured, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("%w: encoding the apply configuration: %w", ErrUnsupported, err)
	}
	b, err = StampPatch(types.ApplyPatchType, b, t)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(b); err != nil {
		return nil, fmt.Errorf("%w: the apply configuration: %w", ErrUnsupported, err)
	}
	return u, nil
}

func (c *fencedClient) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	return StampedDelete(ctx, c.f,
		func(ctx context.Context, patch []byte) (metav1.Object, error) {
			o, ok := obj.DeepCopyObject().(client.Object)
			if !ok {
				return nil, fmt.Errorf("%w: %T does not copy into a client.Object", ErrUnsupported, obj)
			}
			if err := c.Client.Patch(ctx, o, client.RawPatch(types.MergePatchType, patch)); err != nil {
				return nil, err
			}
			return o, nil
		},
		func(ctx context.Context, do metav1.DeleteOptions) error {
			return c.Client.Delete(ctx, obj, append(opts, client.Preconditions(*do.Preconditions))...)
		})
}

func (c *fencedClient) DeleteAllOf(context.Context, client.Object, ...client.DeleteAllOfOption) error {
	return fmt.Errorf("%w: DeleteAllOf has no single object to stamp; list the objects and Delete each", ErrUnsupported)
}

func (c *fencedClient) Status() client.SubResourceWriter {
	return &fencedSubResource{SubResourceClient: statusClient{c.Client.Status()}, f: c.f}
}

func (c *fencedClient) SubResource(subResource string) client.SubResourceClient {
	return &fencedSubResource{SubResourceClient: c.Client.SubResource(subResource), f: c.f}
}

// statusClient makes the status writer a SubResourceClient; its Get is never called (Status returns only
// the writer).
type statusClient struct{ client.SubResourceWriter }

func (statusClient) Get(context.Context, client.Object, client.Object, ...client.SubResourceGetOption) error {
	return errors.New("fencing: Get on a status writer")
}

// fencedSubResource asks the fencer before each subresource write; it stamps nothing (see NewClient).
type fencedSubResource struct {
	client.SubResourceClient
	f Fencer
}

func (s *fencedSubResource) Create(ctx context.Context, obj, sub client.Object, opts ...client.SubResourceCreateOption) error {
	if _, err := fence(s.f); err != nil {
		return err
	}
	return s.SubResourceClient.Create(ctx, obj, sub, opts...)
}

func (s *fencedSubResource) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	if _, err := fence(s.f); err != nil {
		return err
	}
	return s.SubResourceClient.Update(ctx, obj, opts...)
}

func (s *fencedSubResource) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	if _, err := fence(s.f); err != nil {
		return err
	}
	return s.SubResourceClient.Patch(ctx, obj, patch, opts...)
}

func (s *fencedSubResource) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.SubResourceApplyOption) error {
	if _, err := fence(s.f); err != nil {
		return err
	}
	return s.SubResourceClient.Apply(ctx, obj, opts...)
}
