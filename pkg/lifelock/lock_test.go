package lifelock

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// New's client asks for protobuf and no gzip, and leaves the caller's rest.Config as it was.
func TestClientConfigAsksForProtobufUncompressed(t *testing.T) {
	var mu sync.Mutex
	var accept, encoding []string
	// TLS, as every real API server: for a plain-HTTP config without TLS settings, client-go uses
	// http.DefaultTransport, which ignores DisableCompression.
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		accept = append(accept, r.Header.Get("Accept"))
		encoding = append(encoding, r.Header.Get("Accept-Encoding"))
		mu.Unlock()
		http.Error(w, "no", http.StatusNotFound)
	}))
	defer srv.Close()

	user := &rest.Config{Host: srv.URL, UserAgent: "operator/1", TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
	client, err := kubernetes.NewForConfig(clientConfig(user))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = client.CoreV1().Pods("ns").Get(t.Context(), "p", metav1.GetOptions{})

	if user.DisableCompression || user.ContentType != "" || user.UserAgent != "operator/1" {
		t.Errorf("the caller's rest.Config changed: %+v", user)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(accept) == 0 {
		t.Fatal("the client sent no request")
	}
	for i := range accept {
		if !strings.HasPrefix(accept[i], "application/vnd.kubernetes.protobuf") {
			t.Errorf("request %d: Accept %q, want protobuf first", i, accept[i])
		}
		if strings.Contains(encoding[i], "gzip") {
			t.Errorf("request %d: Accept-Encoding %q; lifelock's client must not ask for gzip", i, encoding[i])
		}
	}
}
