// Package harness is the one test harness every lifelock suite uses: a real control plane (envtest's
// kube-apiserver and etcd, plus kube-controller-manager running the garbage collector and the Pod GC),
// candidate Pods, and the kubelet's part in their lifecycle, played by hand since there is no kubelet.
package harness

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// K8sVersion is the version of the control-plane binaries `make envtest` builds (versions.env).
var K8sVersion = envValue(versionsEnv, "K8S_VERSION")

// VersionEnv names the environment variable that, when set, is the Kubernetes version StartWith requires
// of kube-apiserver ("1.35.4"): a run meant for one version fails at start, saying which one it found,
// instead of passing against other binaries (a preset KUBEBUILDER_ASSETS wins over the versioned cache).
// `make test-compat` sets it; when it is unset, any version is accepted.
const VersionEnv = "LIFELOCK_K8S_VERSION"

//go:embed versions.env
var versionsEnv string

// envValue returns the value of key in a file of KEY=value lines; it panics if there is none, since the
// file is part of this package.
func envValue(file, key string) string {
	for _, line := range strings.Split(file, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), key+"="); ok {
			return v
		}
	}
	panic("versions.env has no " + key)
}

// AssetsDir returns where the control-plane binaries are: $KUBEBUILDER_ASSETS, else setup-envtest's cache
// directory for K8sVersion (where `make envtest` puts them).
func AssetsDir() string {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d
	}
	data := os.Getenv("XDG_DATA_HOME")
	if data == "" {
		home, _ := os.UserHomeDir()
		data = filepath.Join(home, ".local", "share")
	}
	return filepath.Join(data, "kubebuilder-envtest", "k8s", K8sVersion+"-"+runtime.GOOS+"-"+runtime.GOARCH)
}

// ControlPlane is a running test control plane.
type ControlPlane struct {
	// Config is an administrator's connection (system:masters).
	Config *rest.Config
	// Client is a clientset for Config.
	Client kubernetes.Interface
	// Kubeconfig is the path of an administrator's kubeconfig file, for candidate processes and kubectl.
	Kubeconfig string
	// ServerVersion is the version kube-apiserver reports, without the "v" ("1.37.2"); empty in a process
	// that attached to a control plane another one started.
	ServerVersion string

	// envMu serialises what reads or changes env's API server (AddUser, RestartAPIServer, Stop).
	envMu     sync.Mutex
	env       *envtest.Environment
	kcm       *exec.Cmd
	kcmExited chan struct{} // closed once kube-controller-manager has exited; kcmErr says how
	kcmErr    error
	dir       string
	assets    string // the directory of the control plane's binaries

	// apiServerStopped: StopAPIServer stopped kube-apiserver and StartAPIServer has not started it again.
	// Guarded by envMu.
	apiServerStopped bool
}

// Options changes how Start runs the control plane.
type Options struct {
	// APIServerFlags are set on kube-apiserver beside envtest's own, name (without "--") to value.
	APIServerFlags map[string]string
}

// Start starts kube-apiserver, etcd and kube-controller-manager (garbagecollector and podgc only) and waits
// until the garbage collector really collects. kube-controller-manager's log is kept in a temporary
// directory that Stop removes.
func Start(ctx context.Context) (*ControlPlane, error) { return StartWith(ctx, Options{}) }

// StartWith is Start with options.
func StartWith(ctx context.Context, o Options) (*ControlPlane, error) {
	assets := AssetsDir()
	for _, b := range []string{"kube-apiserver", "etcd", "kube-controller-manager"} {
		if _, err := os.Stat(filepath.Join(assets, b)); err != nil {
			return nil, fmt.Errorf("control plane binary %s missing in %s: run `make envtest` first (or set KUBEBUILDER_ASSETS): %w", b, assets, err)
		}
	}
	dir, err := os.MkdirTemp("", "lifelock-controlplane-")
	if err != nil {
		return nil, err
	}
	cp := &ControlPlane{dir: dir, assets: assets, env: &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		ControlPlaneStartTimeout: 60 * time.Second,
		ControlPlaneStopTimeout:  60 * time.Second,
	}}
	apiServer := cp.env.ControlPlane.GetAPIServer()
	// Without it, kube-apiserver waits up to --request-timeout for open watches when it stops.
	apiServer.Configure().Set("shutdown-send-retry-after", "true")
	for name, value := range o.APIServerFlags {
		apiServer.Configure().Set(name, value)
	}
	// A fixed certificate directory outlives kube-apiserver's Stop (envtest deletes a temporary one and
	// makes a new serving CA on the next Start), so RestartAPIServer keeps every connection handed out valid.
	apiServer.CertDir = filepath.Join(dir, "kube-apiserver")
	if err := os.Mkdir(apiServer.CertDir, 0o700); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("creating kube-apiserver's certificate directory: %w", err)
	}
	if cp.Config, err = cp.env.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("starting kube-apiserver and etcd from %s: %w", assets, err)
	}
	if cp.Client, err = kubernetes.NewForConfig(cp.Config); err != nil {
		return nil, errors.Join(err, cp.Stop())
	}
	if cp.ServerVersion, err = serverVersion(cp.Client, os.Getenv(VersionEnv)); err != nil {
		return nil, errors.Join(fmt.Errorf("kube-apiserver from %s: %w", assets, err), cp.Stop())
	}
	admin, err := cp.env.AddUser(envtest.User{Name: "lifelock-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, errors.Join(err, cp.Stop())
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		return nil, errors.Join(err, cp.Stop())
	}
	cp.Kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if err := os.WriteFile(cp.Kubeconfig, kubeconfig, 0o600); err != nil {
		return nil, errors.Join(err, cp.Stop())
	}
	if err := cp.startKCM(assets); err != nil {
		return nil, errors.Join(err, cp.Stop())
	}
	if err := cp.waitGarbageCollector(ctx); err != nil {
		return nil, errors.Join(err, cp.Stop())
	}
	return cp, nil
}

// serverVersion returns the version kube-apiserver reports, without the "v", and an error if want is set
// and differs from it.
func serverVersion(c kubernetes.Interface, want string) (string, error) {
	info, err := c.Discovery().ServerVersion()
	if err != nil {
		return "", fmt.Errorf("reading its version: %w", err)
	}
	got := strings.TrimPrefix(info.GitVersion, "v")
	want = strings.TrimPrefix(want, "v")
	switch {
	case want == "" || got == want:
		return got, nil
	case strings.HasPrefix(got, "0.0.0"):
		return got, fmt.Errorf("it reports no version (%s), so %s=%s cannot be checked: it was built without one "+
			"(hack/build-envtest.sh stamps it since make test-compat came); remove its directory and build it again", info.GitVersion, VersionEnv, want)
	default:
		return got, fmt.Errorf("it is v%s, but %s=%s asks for v%s", got, VersionEnv, want, want)
	}
}

func (cp *ControlPlane) startKCM(assets string) error {
	logFile, err := os.Create(filepath.Join(cp.dir, "kube-controller-manager.log"))
	if err != nil {
		return err
	}
	cp.kcm = exec.Command(filepath.Join(assets, "kube-controller-manager"),
		"--kubeconfig="+cp.Kubeconfig,
		"--controllers=garbagecollector,podgc",
		"--leader-elect=false",
		"--secure-port=0",
		"--use-service-account-credentials=false",
	)
	cp.kcm.Stdout, cp.kcm.Stderr = logFile, logFile
	if err := cp.kcm.Start(); err != nil {
		_ = logFile.Close()
		return fmt.Errorf("starting kube-controller-manager: %w", err)
	}
	cp.kcmExited = make(chan struct{})
	go func() {
		cp.kcmErr = cp.kcm.Wait()
		_ = logFile.Close()
		close(cp.kcmExited)
	}()
	return nil
}

// waitGarbageCollector waits until an object owned by a deleted Pod is collected: the GC has synced.
func (cp *ControlPlane) waitGarbageCollector(ctx context.Context) error {
	const ns = "default"
	pod, err := cp.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "gc-probe-"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "none"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("garbage-collector probe: %w", err)
	}
	cm, err := cp.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
		GenerateName:    "gc-probe-",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID}},
	}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("garbage-collector probe: %w", err)
	}
	if err := cp.Client.CoreV1().Pods(ns).Delete(ctx, pod.Name, *metav1.NewDeleteOptions(0)); err != nil {
		return fmt.Errorf("garbage-collector probe: %w", err)
	}
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		select {
		case <-cp.kcmExited:
			return false, fmt.Errorf("kube-controller-manager exited (log: %s): %w", filepath.Join(cp.dir, "kube-controller-manager.log"), cp.kcmErr)
		default:
		}
		_, err := cp.Client.CoreV1().ConfigMaps(ns).Get(ctx, cm.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the garbage collector to collect an orphan: %w", err)
	}
	return nil
}

// RestartAPIServer stops kube-apiserver (etcd keeps running, and with it every object), starts it again on
// the same address with the same certificates, and waits until it is ready. Every connection handed out
// stays valid; clients in use meanwhile, like candidates and kube-controller-manager, see errors while it
// is down and reconnect.
func (cp *ControlPlane) RestartAPIServer(ctx context.Context) error {
	if err := cp.owned("RestartAPIServer"); err != nil {
		return err
	}
	cp.envMu.Lock()
	defer cp.envMu.Unlock()
	if !cp.apiServerStopped {
		if err := cp.stopAPIServerLocked(); err != nil {
			return err
		}
	}
	return cp.startAPIServerLocked(ctx)
}

// StopAPIServer stops kube-apiserver and leaves it stopped (etcd keeps running, and with it every object):
// an API outage of the length the caller chooses. StartAPIServer ends it. Stopping it when it is already
// stopped does nothing.
func (cp *ControlPlane) StopAPIServer() error {
	if err := cp.owned("StopAPIServer"); err != nil {
		return err
	}
	cp.envMu.Lock()
	defer cp.envMu.Unlock()
	if cp.apiServerStopped {
		return nil
	}
	return cp.stopAPIServerLocked()
}

// StartAPIServer starts kube-apiserver again after StopAPIServer, on the same address with the same
// certificates, and waits until it is ready; every connection handed out stays valid. Starting it when it
// runs does nothing, so a spec can defer it as a cleanup.
func (cp *ControlPlane) StartAPIServer(ctx context.Context) error {
	if err := cp.owned("StartAPIServer"); err != nil {
		return err
	}
	cp.envMu.Lock()
	defer cp.envMu.Unlock()
	if !cp.apiServerStopped {
		return nil
	}
	return cp.startAPIServerLocked(ctx)
}

// stopAPIServerLocked stops kube-apiserver. cp.envMu must be held.
func (cp *ControlPlane) stopAPIServerLocked() error {
	if err := cp.env.ControlPlane.GetAPIServer().Stop(); err != nil {
		return fmt.Errorf("stopping kube-apiserver: %w", err)
	}
	cp.apiServerStopped = true
	return nil
}

// startAPIServerLocked starts the stopped kube-apiserver and waits until it is ready. cp.envMu must be held.
func (cp *ControlPlane) startAPIServerLocked(ctx context.Context) error {
	// Start keeps the address and, as the certificates are in place, its serving CA and client CA; it
	// returns once /healthz answers.
	if err := cp.env.ControlPlane.GetAPIServer().Start(); err != nil {
		return fmt.Errorf("starting kube-apiserver again: %w", err)
	}
	cp.apiServerStopped = false
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := cp.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil && ctx.Err() == nil { // keep why it is not ready, not that the time ran out
			lastErr = err
		}
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the restarted kube-apiserver to be ready: %w", errors.Join(err, lastErr))
	}
	return nil
}

// AddUser returns a connection authenticated as a user in groups, for RBAC tests.
func (cp *ControlPlane) AddUser(name string, groups ...string) (*rest.Config, error) {
	if err := cp.owned("AddUser"); err != nil {
		return nil, err
	}
	cp.envMu.Lock()
	defer cp.envMu.Unlock()
	u, err := cp.env.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return nil, err
	}
	return u.Config(), nil
}

// AddUserKubeconfig writes a kubeconfig file for a user in groups, for candidate processes that must run
// with only the permissions RBAC gives them, and returns its path. Stop removes it.
func (cp *ControlPlane) AddUserKubeconfig(name string, groups ...string) (string, error) {
	if err := cp.owned("AddUserKubeconfig"); err != nil {
		return "", err
	}
	cp.envMu.Lock()
	u, err := cp.env.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	cp.envMu.Unlock()
	if err != nil {
		return "", err
	}
	b, err := u.KubeConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(cp.dir, name+".kubeconfig")
	return path, os.WriteFile(path, b, 0o600)
}

// APIServerPID returns the process ID of the kube-apiserver running now (RestartAPIServer starts a new
// one), so that a benchmark can read its CPU time and memory in /proc/<pid>. envtest keeps its process
// unexported; this finds it as the child of this process that runs the kube-apiserver binary. Linux only.
func (cp *ControlPlane) APIServerPID() (int, error) {
	if err := cp.owned("APIServerPID"); err != nil {
		return 0, err
	}
	return childRunning(filepath.Join(cp.assets, "kube-apiserver"))
}

// EtcdPID returns the process ID of etcd, found as APIServerPID finds kube-apiserver's. Linux only.
func (cp *ControlPlane) EtcdPID() (int, error) { return childRunning(filepath.Join(cp.assets, "etcd")) }

// childRunning returns the one child of this process whose executable is program, from /proc.
func childRunning(program string) (int, error) {
	want, err := filepath.EvalSymlinks(program)
	if err != nil {
		return 0, err
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("finding the process of %s: %w", program, err)
	}
	self := os.Getpid()
	var found []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue // it has exited
		}
		// The command name (field 2) is in parentheses and may hold spaces; the parent's ID is field 4.
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) < 2 || f[1] != strconv.Itoa(self) {
			continue
		}
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && exe == want {
			found = append(found, pid)
		}
	}
	if len(found) != 1 {
		return 0, fmt.Errorf("%d running children of this process run %s, want 1", len(found), want)
	}
	return found[0], nil
}

// Stop stops everything Start started and removes its files. On a control plane from Attach it does
// nothing: the process that started it stops it.
func (cp *ControlPlane) Stop() error {
	if cp.env == nil {
		return nil
	}
	var errs []error
	if cp.kcm != nil && cp.kcm.Process != nil {
		_ = cp.kcm.Process.Kill() // it may have exited already
		<-cp.kcmExited
	}
	cp.envMu.Lock()
	if err := cp.env.Stop(); err != nil {
		errs = append(errs, fmt.Errorf("stopping kube-apiserver and etcd: %w", err))
	}
	cp.envMu.Unlock()
	errs = append(errs, os.RemoveAll(cp.dir))
	return errors.Join(errs...)
}

// shared is what Share hands to the processes of a parallel suite.
type shared struct {
	Kubeconfig string
	QPS        float32
	Burst      int
}

// Share returns what Attach needs to use this control plane from another process: for a parallel Ginkgo
// suite, whose first process starts it and hands the result of Share to the others
// (SynchronizedBeforeSuite).
func (cp *ControlPlane) Share() []byte {
	b, err := json.Marshal(shared{Kubeconfig: cp.Kubeconfig, QPS: cp.Config.QPS, Burst: cp.Config.Burst})
	if err != nil {
		panic(fmt.Sprintf("harness: encoding the control plane's connection: %v", err)) // plain strings and numbers
	}
	return b
}

// Attach connects to a control plane another process started, from what its Share returned. The result
// does what only needs the API server; what needs the control plane's processes or its certificate
// authority (AddUser, AddUserKubeconfig, StopAPIServer, StartAPIServer, RestartAPIServer, APIServerPID)
// returns an error saying so: run such a spec as Serial, which Ginkgo runs in the first process.
func Attach(data []byte) (*ControlPlane, error) {
	var sh shared
	if err := json.Unmarshal(data, &sh); err != nil {
		return nil, fmt.Errorf("reading the shared control plane's connection %q: %w", data, err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", sh.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("reading the shared control plane's kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = sh.QPS, sh.Burst
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &ControlPlane{Config: cfg, Client: cs, Kubeconfig: sh.Kubeconfig}, nil
}

// owned returns an error if this process did not start the control plane, for op, which needs its
// processes or its certificate authority.
func (cp *ControlPlane) owned(op string) error {
	if cp.env == nil {
		return fmt.Errorf("%s needs the process that started the control plane; this one attached to it: mark the spec Serial so that Ginkgo runs it in process 1", op)
	}
	return nil
}
