package harness

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
)

// This file is what the suites observe from outside a candidate: the Events recorded on an object, a
// manager's metrics endpoint.

// Events returns the core/v1 Events recorded on the object of kind (for example "Pod", "Lease",
// "ConfigMap") named name in ns, oldest first.
func (cp *ControlPlane) Events(ctx context.Context, ns, kind, name string) ([]corev1.Event, error) {
	sel := fields.Set{"involvedObject.kind": kind, "involvedObject.name": name}.AsSelector().String()
	list, err := cp.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("listing Events on %s %s/%s: %w", kind, ns, name, err)
	}
	evs := list.Items
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].FirstTimestamp.Before(&evs[j].FirstTimestamp) })
	return evs, nil
}

// EventReasons returns the reasons of the Events on the object, oldest first, one per Event (an Event
// that client-go aggregated counts once).
func (cp *ControlPlane) EventReasons(ctx context.Context, ns, kind, name string) ([]string, error) {
	evs, err := cp.Events(ctx, ns, kind, name)
	if err != nil {
		return nil, err
	}
	reasons := make([]string, 0, len(evs))
	for _, e := range evs {
		reasons = append(reasons, e.Reason)
	}
	return reasons, nil
}

// Metrics is one scrape of a Prometheus text endpoint: the value of every counter, gauge and untyped
// sample, and the count and sum of every histogram (as name_count and name_sum), keyed by Key.
type Metrics map[string]float64

// Key names one sample: name{label="value",...} with the labels sorted, as Prometheus prints them.
func Key(name string, labels map[string]string) string {
	if len(labels) == 0 {
		return name
	}
	parts := make([]string, 0, len(labels))
	for k, v := range labels {
		parts = append(parts, fmt.Sprintf("%s=%q", k, v))
	}
	sort.Strings(parts)
	return name + "{" + strings.Join(parts, ",") + "}"
}

// Value returns the sample name with exactly labels, and whether it is there.
func (m Metrics) Value(name string, labels map[string]string) (float64, bool) {
	v, ok := m[Key(name, labels)]
	return v, ok
}

// Sum adds up the samples of name whose labels include every one of match (all of them if match is empty).
func (m Metrics) Sum(name string, match map[string]string) float64 {
	var n float64
	for key, v := range m {
		if key != name && !strings.HasPrefix(key, name+"{") {
			continue
		}
		all := true
		for k, want := range match {
			if !strings.Contains(key, fmt.Sprintf("%s=%q", k, want)) {
				all = false
				break
			}
		}
		if all {
			n += v
		}
	}
	return n
}

// ScrapeMetrics reads the metrics endpoint at url (for example http://10.0.0.1:8080/metrics).
func ScrapeMetrics(ctx context.Context, url string) (Metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("scraping %s: %s: %s", url, resp.Status, body)
	}
	m, err := ParseMetrics(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing the metrics of %s: %w", url, err)
	}
	return m, nil
}

// ParseMetrics reads metrics in the Prometheus text format (for example kube-apiserver's /metrics).
func ParseMetrics(r io.Reader) (Metrics, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return nil, err
	}
	out := Metrics{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[Key(name, labels)] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[Key(name, labels)] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[Key(name+"_count", labels)] = float64(m.GetHistogram().GetSampleCount())
				out[Key(name+"_sum", labels)] = m.GetHistogram().GetSampleSum()
			case dto.MetricType_UNTYPED:
				out[Key(name, labels)] = m.GetUntyped().GetValue()
			}
		}
	}
	return out, nil
}

// Probe GETs url and returns its status code and body (for a manager's /healthz and /readyz).
func Probe(ctx context.Context, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(body), err
}

// FreePort returns a TCP port on ip that is free now, for a process to bind its metrics or probe endpoint
// to.
func FreePort(ip string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}
