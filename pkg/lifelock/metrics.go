package lifelock

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Metrics, registered on controller-runtime's registry (served on the manager's metrics endpoint). The
// label "name" is the lock's name, as in controller-runtime's leader_election_master_status, which keeps
// working in life mode: client-go's elector sets it for any lock.
var (
	acquisitionsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lifelock_acquisitions_total",
		Help: "Leader-for-life locks acquired by this process, by lock name and by why the lock could be taken: " +
			"created (it did not exist), holder_pod_gone, holder_uid_changed, holder_terminal, holder_out_of_service " +
			"(takeovers from a gone holder), released (freed by its holder on shutdown), lease_expired (a plain " +
			"client-go lease), container_restart (already held by this Pod).",
	}, []string{"name", "reason"})

	acquireWaitSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "lifelock_acquire_wait_seconds",
		Help:    "Time from a candidate's first attempt to its acquisition of the lock, by lock name.",
		Buckets: []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 86400},
	}, []string{"name"})

	stuckHolder = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "lifelock_blocked_by_stuck_holder",
		Help: "1 while this candidate waits on a holder that looks stuck (its Node is NotReady or Unknown, or its " +
			"Pod has been terminating past its grace period), else 0, by lock name. See the HolderLooksStuck Event.",
	}, []string{"name"})
)

// acquisitionReasons are the values of lifelock_acquisitions_total's reason label. A lock exports every one
// at 0 from its start, as Prometheus advises for labels known in advance: a follower's series exists before
// it acquires, so increase() and rate() see its acquisition.
var acquisitionReasons = []string{
	"created", "holder_pod_gone", "holder_uid_changed", "holder_terminal", "holder_out_of_service",
	"released", "lease_expired", "container_restart",
}

// initMetrics exports the series of the lock name before anything happened: the acquisitions at 0 and the
// stuck-holder gauge at 0.
func initMetrics(name string) {
	for _, reason := range acquisitionReasons {
		acquisitionsTotal.WithLabelValues(name, reason)
	}
	stuckHolder.WithLabelValues(name).Set(0)
}

func init() {
	metrics.Registry.MustRegister(acquisitionsTotal, acquireWaitSeconds, stuckHolder)
}
