// Command manager is a small kubebuilder-style manager that elects its leader with lifelock.
//
// Its one leader-only controller stamps the annotation lifelock.example/handled-by: <POD_NAME> on every
// ConfigMap labelled lifelock.example/watched=true in its namespace, so who leads shows in the cluster:
//
//	kubectl label configmap my-config lifelock.example/watched=true
//	kubectl get configmap my-config -o jsonpath='{.metadata.annotations.lifelock\.example/handled-by}'
//
// In life mode it also fences its writes with the lock's term (lifelock.Term): it stamps
// lifelock.example/term, and it never writes an object stamped by a later term, which only a superseded
// leader can see. Every write carries the object's resourceVersion, so a write raced by the next leader
// fails instead of overwriting it.
//
// Run it with --leader-elect in a Pod (deployment.yaml), or locally with POD_NAME and POD_NAMESPACE naming
// an existing Pod. --leader-elect-mode=lease switches back to controller-runtime's Lease election.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/lifelock/lifelock/pkg/lifelock"
	"github.com/lifelock/lifelock/pkg/manageropts"
)

const (
	watchedLabel        = "lifelock.example/watched"
	handledByAnnotation = "lifelock.example/handled-by"
	termAnnotation      = "lifelock.example/term"
)

func main() {
	var enableLeaderElection bool
	var metricsAddr, probeAddr string
	flag.BoolVar(&enableLeaderElection, "leader-elect", false,
		"Enable leader election for the controller manager, ensuring there is only one active controller manager.")
	flag.StringVar(&metricsAddr, "metrics-bind-address", "0",
		"The address the metrics endpoint binds to. Use :8080 for HTTP, or leave as 0 to disable the metrics service.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "The address the probe endpoint binds to.")
	manageropts.BindFlags(flag.CommandLine)
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	setupLog := ctrl.Log.WithName("setup")

	podName, namespace := os.Getenv("POD_NAME"), os.Getenv("POD_NAMESPACE")
	if podName == "" {
		podName, _ = os.Hostname()
	}
	if namespace == "" {
		// In a Pod, the service account's namespace is the Pod's (as the lock finds it too).
		if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
			namespace = strings.TrimSpace(string(b))
		}
	}
	// Cache only the watched ConfigMaps, and only in our namespace when it is known, so that the namespaced
	// Role in examples/manager/role.yaml is enough.
	watched := cache.ByObject{Label: labels.SelectorFromSet(labels.Set{watchedLabel: "true"})}
	if namespace != "" {
		watched.Namespaces = map[string]cache.Config{namespace: {}}
	}

	mgr, err := manageropts.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Metrics:                metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress: probeAddr,
		LeaderElection:         enableLeaderElection,
		LeaderElectionID:       "lifelock-example",
		Cache:                  cache.Options{ByObject: map[client.Object]cache.ByObject{&corev1.ConfigMap{}: watched}},
	})
	if err != nil {
		setupLog.Error(err, "Unable to create manager")
		os.Exit(1)
	}

	// EnableWarmup: followers fill the controller's cache before they lead, so a new leader acts at once.
	if err := ctrl.NewControllerManagedBy(mgr).
		Named("configmap-stamper").
		For(&corev1.ConfigMap{}).
		WithOptions(controller.Options{EnableWarmup: ptr.To(true)}).
		Complete(newConfigMapReconciler(mgr, podName)); err != nil {
		setupLog.Error(err, "Unable to create controller", "controller", "configmap-stamper")
		os.Exit(1)
	}
	if err := mgr.Add(leaderAnnouncer{log: ctrl.Log.WithName("leader")}); err != nil {
		setupLog.Error(err, "Unable to add the leader announcer")
		os.Exit(1)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		setupLog.Error(err, "Unable to set up health check")
		os.Exit(1)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		setupLog.Error(err, "Unable to set up ready check")
		os.Exit(1)
	}

	setupLog.Info("Starting manager", "pod", podName, "namespace", namespace)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		setupLog.Error(err, "Problem running manager")
		os.Exit(1)
	}
}

// configMapReconciler stamps the name of the leader's Pod on every watched ConfigMap.
type configMapReconciler struct {
	client.Client
	podName string
	// lock is the leader lock in life mode (nil in lease mode, or without election: writes are not fenced).
	lock *lifelock.Lock
}

func newConfigMapReconciler(mgr ctrl.Manager, podName string) *configMapReconciler {
	lock, _ := manageropts.LockOf(mgr) // not ok in lease mode or without election: nothing to fence with
	return &configMapReconciler{Client: mgr.GetClient(), podName: podName, lock: lock}
}

// fence returns the term to stamp on a write, or an error when this process must not write (see
// lifelock.Lock.Fence); the zero term without a lock.
func (r *configMapReconciler) fence() (lifelock.Term, error) {
	if r.lock == nil {
		return lifelock.Term{}, nil
	}
	return r.lock.Fence()
}

func (r *configMapReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var cm corev1.ConfigMap
	if err := r.Get(ctx, req.NamespacedName, &cm); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	// The fencing epoch: in life mode, the term this process leads in (none in lease mode). Fence refuses
	// once this process has lost the lock, while its manager is still stopping: write nothing then.
	term, err := r.fence()
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("not writing %s: %w", req, err)
	}
	fenced := !term.IsZero()
	stamp := ""
	if fenced {
		stamp = term.String()
		if s, ok := cm.Annotations[termAnnotation]; ok && s != stamp {
			written, err := lifelock.ParseTerm(s)
			if err != nil {
				return ctrl.Result{}, reconcile.TerminalError(fmt.Errorf("annotation %s: %w", termAnnotation, err))
			}
			if superseded, err := term.Before(written); err != nil || superseded {
				// A later leader has written this object: this process no longer leads and is stopping.
				return ctrl.Result{}, fmt.Errorf("superseded: %s was written in term %s, after this leader's term %s", req, written, term)
			}
		}
	}
	if cm.Annotations[handledByAnnotation] == r.podName && cm.Annotations[termAnnotation] == stamp {
		return ctrl.Result{}, nil
	}
	patch := client.MergeFromWithOptions(cm.DeepCopy(), client.MergeFromWithOptimisticLock{})
	if cm.Annotations == nil {
		cm.Annotations = map[string]string{}
	}
	cm.Annotations[handledByAnnotation] = r.podName
	if fenced {
		cm.Annotations[termAnnotation] = stamp
	}
	if err := r.Patch(ctx, &cm, patch); err != nil {
		return ctrl.Result{}, err
	}
	ctrl.LoggerFrom(ctx).Info("Stamped ConfigMap", "handledBy", r.podName, "term", stamp)
	return ctrl.Result{}, nil
}

// leaderAnnouncer logs when this process starts and stops acting as leader. Like the controller, the
// manager starts it only once the lock is won, and cancels its context on shutdown or loss.
type leaderAnnouncer struct{ log logr.Logger }

func (leaderAnnouncer) NeedLeaderElection() bool { return true }

func (a leaderAnnouncer) Start(ctx context.Context) error {
	a.log.Info("Started acting as leader")
	<-ctx.Done()
	a.log.Info("Stopped acting")
	return nil
}
