package fencing_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/lifelock/lifelock/pkg/fencing"
	"github.com/lifelock/lifelock/pkg/lifelock"
)

// fencer is a Fencer whose answer a test sets.
type fencer struct {
	term lifelock.Term
	err  error
}

func (f *fencer) Fence() (lifelock.Term, error) { return f.term, f.err }

var term = lifelock.Term{Number: 3, LockUID: "6a0b4c1e-0000-4000-8000-000000000001", Revision: "48211"}

// recording returns a fake client that counts the requests that reach it.
func recording(t *testing.T, objs ...client.Object) (client.WithWatch, *int) {
	t.Helper()
	n := 0
	base := fake.NewClientBuilder().WithObjects(objs...).Build()
	count := func() { n++ }
	return interceptor.NewClient(base, interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			count()
			return c.Create(ctx, obj, opts...)
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			count()
			return c.Update(ctx, obj, opts...)
		},
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			count()
			return c.Patch(ctx, obj, patch, opts...)
		},
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			count()
			return c.Delete(ctx, obj, opts...)
		},
		DeleteAllOf: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteAllOfOption) error {
			count()
			return c.DeleteAllOf(ctx, obj, opts...)
		},
		SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			count()
			return c.SubResource(sub).Update(ctx, obj, opts...)
		},
	}), &n
}

func cm(name string, annotations map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ops", Annotations: annotations}}
}

func stampOf(t *testing.T, c client.Client, name string) string {
	t.Helper()
	got := &corev1.ConfigMap{}
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: "ops", Name: name}, got); err != nil {
		t.Fatal(err)
	}
	return got.Annotations[fencing.Annotation]
}

func TestClientStampsCreateUpdatePatch(t *testing.T) {
	ctx := t.Context()
	base, _ := recording(t, cm("theirs", map[string]string{fencing.Annotation: "9/other/99999", "keep": "x"}))
	c := fencing.NewClient(base, &fencer{term: term})

	obj := cm("mine", nil)
	if err := c.Create(ctx, obj); err != nil {
		t.Fatal(err)
	}
	if got := stampOf(t, base, "mine"); got != term.String() {
		t.Errorf("create: stamp %q, want %q", got, term)
	}
	obj.Data = map[string]string{"k": "v"}
	obj.Annotations[fencing.Annotation] = "stale"
	if err := c.Update(ctx, obj); err != nil {
		t.Fatal(err)
	}
	if got := stampOf(t, base, "mine"); got != term.String() {
		t.Errorf("update: stamp %q, want %q", got, term)
	}

	// A merge patch computed from a copy that already shows our stamp must still send it: the stored object
	// carries another term's.
	theirs := &corev1.ConfigMap{}
	if err := base.Get(ctx, client.ObjectKey{Namespace: "ops", Name: "theirs"}, theirs); err != nil {
		t.Fatal(err)
	}
	orig := theirs.DeepCopy()
	orig.Annotations[fencing.Annotation] = term.String()
	changed := orig.DeepCopy()
	changed.Data = map[string]string{"k": "v"}
	if err := c.Patch(ctx, changed, client.MergeFrom(orig)); err != nil {
		t.Fatal(err)
	}
	if got := stampOf(t, base, "theirs"); got != term.String() {
		t.Errorf("merge patch: stamp %q, want %q", got, term)
	}
	got := &corev1.ConfigMap{}
	_ = base.Get(ctx, client.ObjectKey{Namespace: "ops", Name: "theirs"}, got)
	if got.Annotations["keep"] != "x" || got.Data["k"] != "v" {
		t.Errorf("merge patch: other fields lost: %v %v", got.Annotations, got.Data)
	}

	if err := c.Patch(ctx, changed, client.RawPatch(types.JSONPatchType, []byte(`[]`))); !errors.Is(err, fencing.ErrUnsupported) {
		t.Errorf("JSON patch: %v, want ErrUnsupported", err)
	}
}

func TestClientRefusesLocally(t *testing.T) {
	ctx := t.Context()
	existing := cm("existing", nil)
	base, sent := recording(t, existing)
	f := &fencer{term: term, err: lifelock.ErrLockLost}
	c := fencing.NewClient(base, f)

	writes := map[string]func() error{
		"create": func() error { return c.Create(ctx, cm("new", nil)) },
		"update": func() error { return c.Update(ctx, existing.DeepCopy()) },
		"patch": func() error {
			return c.Patch(ctx, existing.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{}`)))
		},
		"delete": func() error { return c.Delete(ctx, existing.DeepCopy()) },
		"status": func() error { return c.Status().Update(ctx, existing.DeepCopy()) },
		"subres": func() error { return c.SubResource("status").Update(ctx, existing.DeepCopy()) },
		"apply":  func() error { return c.Apply(ctx, corev1ac.ConfigMap("existing", "ops")) },
		"deleteAll": func() error {
			return c.DeleteAllOf(ctx, &corev1.ConfigMap{}, client.InNamespace("ops"))
		},
	}
	for name, write := range writes {
		err := write()
		if err == nil {
			t.Errorf("%s: sent by a process that lost its lock", name)
		}
		if name != "deleteAll" && !errors.Is(err, lifelock.ErrLockLost) {
			t.Errorf("%s: %v, want it to wrap ErrLockLost", name, err)
		}
	}
	if *sent != 0 {
		t.Errorf("%d requests sent, want none", *sent)
	}

	// The zero term (manageropts in lease mode) stamps nothing either.
	f.term, f.err = lifelock.Term{}, nil
	if err := c.Create(ctx, cm("new", nil)); !errors.Is(err, lifelock.ErrNotLeading) {
		t.Errorf("zero term: %v, want ErrNotLeading", err)
	}
}

func TestClientDeleteStampsFirstWithPreconditions(t *testing.T) {
	ctx := t.Context()
	base := fake.NewClientBuilder().WithObjects(cm("doomed", nil)).Build()
	var stamped string
	var pre *metav1.Preconditions
	rec := interceptor.NewClient(base, interceptor.Funcs{
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			if err := c.Patch(ctx, obj, patch, opts...); err != nil {
				return err
			}
			stamped = obj.GetAnnotations()[fencing.Annotation]
			return nil
		},
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			do := &client.DeleteOptions{}
			do.ApplyOptions(opts)
			pre = do.Preconditions
			return c.Delete(ctx, obj, opts...)
		},
	})
	c := fencing.NewClient(rec, &fencer{term: term})
	if err := c.Delete(ctx, cm("doomed", nil)); err != nil {
		t.Fatal(err)
	}
	if stamped != term.String() {
		t.Errorf("stamped %q before the delete, want %q", stamped, term)
	}
	if pre == nil || pre.ResourceVersion == nil || *pre.ResourceVersion == "" || pre.UID == nil {
		t.Fatalf("delete preconditions %+v, want the stamped version's UID and resourceVersion", pre)
	}
	if err := base.Get(ctx, client.ObjectKey{Namespace: "ops", Name: "doomed"}, &corev1.ConfigMap{}); err == nil {
		t.Error("the object is still there")
	}
}

func TestStampPatch(t *testing.T) {
	for _, tc := range []struct {
		pt   types.PatchType
		data string
	}{
		{types.MergePatchType, ``},
		{types.MergePatchType, `{"data":{"a":"b"}}`},
		{types.StrategicMergePatchType, `{"metadata":{"annotations":{"x":"y"}}}`},
		{types.ApplyPatchType, `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"n","annotations":{"lifelock.dev/term":"old"}}}`},
	} {
		out, err := fencing.StampPatch(tc.pt, []byte(tc.data), term)
		if err != nil {
			t.Errorf("%s %s: %v", tc.pt, tc.data, err)
			continue
		}
		var body struct {
			Metadata struct {
				Annotations map[string]string `json:"annotations"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(out, &body); err != nil || body.Metadata.Annotations[fencing.Annotation] != term.String() {
			t.Errorf("%s %s: got %s (%v)", tc.pt, tc.data, out, err)
		}
	}
	for _, bad := range []struct {
		pt   types.PatchType
		data string
	}{{types.JSONPatchType, `[]`}, {types.MergePatchType, `[1]`}, {types.MergePatchType, `null`}} {
		if _, err := fencing.StampPatch(bad.pt, []byte(bad.data), term); !errors.Is(err, fencing.ErrUnsupported) {
			t.Errorf("%s %s: %v, want ErrUnsupported", bad.pt, bad.data, err)
		}
	}
}

func TestStamp(t *testing.T) {
	obj := cm("x", map[string]string{"other": "1"})
	if err := fencing.Stamp(obj, &fencer{term: term}); err != nil {
		t.Fatal(err)
	}
	if obj.Annotations[fencing.Annotation] != term.String() || obj.Annotations["other"] != "1" {
		t.Errorf("annotations %v", obj.Annotations)
	}
	obj = cm("y", nil)
	if err := fencing.Stamp(obj, &fencer{err: lifelock.ErrNotLeading}); !errors.Is(err, lifelock.ErrNotLeading) || obj.Annotations != nil {
		t.Errorf("not leading: %v, annotations %v", err, obj.Annotations)
	}
}

func TestStampedDeleteStopsOnPatchError(t *testing.T) {
	deleted := false
	err := fencing.StampedDelete(t.Context(), &fencer{term: term},
		func(context.Context, []byte) (metav1.Object, error) { return nil, fmt.Errorf("conflict") },
		func(context.Context, metav1.DeleteOptions) error { deleted = true; return nil })
	if err == nil || deleted {
		t.Errorf("err %v, deleted %v: want the patch's error and no delete", err, deleted)
	}
}
