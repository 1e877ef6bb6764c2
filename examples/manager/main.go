// Command manager is a small kubebuilder-style manager that elects its leader with lifelock.
//
// Its one leader-only controller stamps the annotation lifelock.example/handled-by: <POD_NAME> on every
// ConfigMap labelled lifelock.example/watched=true in its namespace, so who leads shows in the cluster:
//
//	kubectl label configmap my-config lifelock.example/watched=true
//	kubectl get configmap my-config -o jsonpath='{.metadata.annotations.lifelock\.example/handled-by}'
//
// Run it with --leader-elect in a Pod (deployment.yaml), or locally with POD_NAME and POD_NAMESPACE naming
// an existing Pod. --leader-elect-mode=lease switches back to controller-runtime's Lease election.
package main

import (
	"context"
	"flag"
	"os"

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

	"github.com/lifelock/lifelock/pkg/manageropts"
	"github.com/lifelock/lifelock/test/harness/witness"
)

const (
	watchedLabel        = "lifelock.example/watched"
	handledByAnnotation = "lifelock.example/handled-by"
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
		Complete(&configMapReconciler{Client: mgr.GetClient(), podName: podName}); err != nil {
		setupLog.Error(err, "Unable to create controller", "controller", "configmap-stamper")
		os.Exit(1)
	}
	if err := mgr.Add(leaderAnnouncer{log: ctrl.Log.WithName("leader")}); err != nil {
		setupLog.Error(err, "Unable to add the leader announcer")
		os.Exit(1)
	}
	// The multi-process test suites set LIFELOCK_WITNESS_DIR to record, on the machine's monotonic clock,
	// when this manager acts; without it nothing is recorded.
	if os.Getenv(witness.DirEnv) != "" {
		if err := mgr.Add(witness.Recorder{Who: podName}); err != nil {
			setupLog.Error(err, "Unable to add the witness recorder")
			os.Exit(1)
		}
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
}

func (r *configMapReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var cm corev1.ConfigMap
	if err := r.Get(ctx, req.NamespacedName, &cm); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if cm.Annotations[handledByAnnotation] == r.podName {
		return ctrl.Result{}, nil
	}
	patch := client.MergeFrom(cm.DeepCopy())
	if cm.Annotations == nil {
		cm.Annotations = map[string]string{}
	}
	cm.Annotations[handledByAnnotation] = r.podName
	if err := r.Patch(ctx, &cm, patch); err != nil {
		return ctrl.Result{}, err
	}
	ctrl.LoggerFrom(ctx).Info("Stamped ConfigMap", "handledBy", r.podName)
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
