// Package node runs a real Kubernetes node on this machine for tests: a kubelet, containerd with runc and
// the CNI bridge, host-local and loopback plugins (all built from module sources by hack/build-node.sh),
// against a control plane such as test/harness's. Everything it starts lives under one temporary directory,
// on one bridge of its own with a /24 in 10.244.0.0/16 that is routed nowhere (no NAT, no gateway), and Stop
// removes it all again, then reports whatever is left.
//
// It needs root, cgroup v1 controllers (the kubelet runs with failCgroupV1: false and the cgroupfs driver),
// and the overlay, bridge and veth kernel features.
package node

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Options says what Start runs.
type Options struct {
	// Bin is the directory hack/build-node.sh prints: kubelet, containerd, containerd-shim-runc-v2, ctr, runc,
	// bridge, host-local, loopback and crictl.
	Bin string
	// Kubeconfig is the kubelet's connection to the API server; it must be allowed to register a Node and
	// manage its Pods (the simplest: a user in system:masters).
	Kubeconfig string
	// Image is an image archive (WriteImage) that Start imports before the kubelet starts; ImageName is its
	// name, which also serves as the sandbox (pause) image, since nothing can be pulled.
	Image, ImageName string
	// Runc, if set, is what containerd runs in place of Bin/runc, with $LIFELOCK_NODE_RUNC naming Bin/runc:
	// runc-noseccomp, since Bin/runc cannot apply the seccomp profile the kubelet asks for every sandbox.
	Runc string
	// Logf, if set, reports progress.
	Logf func(format string, args ...any)
}

// Node is a running node.
type Node struct {
	// Name is the Node's name.
	Name string
	// Subnet is the Pods' subnet, on Bridge.
	Subnet *net.IPNet
	// Bridge is the name of the bridge the Pods' veths are attached to. Start creates it with the address
	// Gateway (the subnet's first) so that Pods reach this machine, and only this machine: they get no route
	// beyond the subnet, and the host neither forwards nor masquerades for them.
	Bridge string
	// Gateway is the bridge's address: what a Pod connects to for a service of this machine (Forward).
	Gateway net.IP
	// Dir holds every file of the node: configurations, logs, containerd's root and state, the kubelet's root.
	Dir string
	// Socket is containerd's socket.
	Socket string

	o          Options
	containerd *process
	kubelet    *process
	before     hostState
	veths      map[string]bool // host ends of Pod veths seen on Bridge
}

// hostPaths are paths the node's programs create outside Dir even when configured otherwise, and paths their
// defaults would use. Seen made: /run/containerd/s (shim sockets), /var/lib/cni (libcni's result cache),
// /var/lib/kubelet/device-plugins (the kubelet's device-plugin socket), /var/log/containers (the kubelet's
// links to container logs), /run/mount (libmount's, from a mount(8) the kubelet runs).
var hostPaths = []string{
	"/run/containerd", "/var/lib/cni", "/var/run/netns", "/var/lib/containerd", "/opt/containerd",
	"/var/run/nri", "/var/lib/kubelet", "/var/log/pods", "/var/log/containers", "/etc/cni", "/opt/cni",
	"/etc/kubernetes", "/run/mount",
}

// kernelTunables are the sysctls the kubelet sets when protectKernelDefaults is false (the default), as
// its container manager's setupKernelTunables does. Stop puts back the values they had before Start.
var kernelTunables = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
}

// cgroupV1Root is where the cgroup v1 hierarchies are mounted.
const cgroupV1Root = "/sys/fs/cgroup"

// hostState is what Start saw before it started anything.
type hostState struct {
	paths   map[string]bool   // which hostPaths existed
	kubepod map[string]bool   // hierarchies (by mount point under cgroupV1Root) with a kubepods cgroup
	sysctls map[string]string // kernelTunables' values
}

func snapshotHost() (hostState, error) {
	s := hostState{paths: map[string]bool{}, kubepod: map[string]bool{}, sysctls: map[string]string{}}
	for _, p := range hostPaths {
		_, err := os.Lstat(p)
		s.paths[p] = err == nil
	}
	hierarchies, err := cgroupHierarchies()
	if err != nil {
		return s, err
	}
	for _, h := range hierarchies {
		_, err := os.Stat(filepath.Join(h, "kubepods"))
		s.kubepod[h] = err == nil
	}
	for _, k := range kernelTunables {
		b, err := os.ReadFile(filepath.Join("/proc/sys", k))
		if err != nil {
			return s, err
		}
		s.sysctls[k] = strings.TrimSpace(string(b))
	}
	return s, nil
}

// cgroupHierarchies returns the mount points of the cgroup hierarchies under cgroupV1Root: the v1
// hierarchies, and the v2 one of a hybrid host (/sys/fs/cgroup/unified), where runc makes the Pods'
// cgroups too although it holds no controllers.
func cgroupHierarchies() ([]string, error) {
	mounts, err := readMounts()
	if err != nil {
		return nil, err
	}
	var hs []string
	v1 := 0
	for _, m := range mounts {
		if (m.fstype == "cgroup" || m.fstype == "cgroup2") && strings.HasPrefix(m.point, cgroupV1Root+"/") {
			hs = append(hs, m.point)
			if m.fstype == "cgroup" {
				v1++
			}
		}
	}
	if v1 == 0 {
		return nil, fmt.Errorf("no cgroup v1 hierarchy mounted under %s", cgroupV1Root)
	}
	return hs, nil
}

type mount struct{ point, fstype string }

func readMounts() ([]mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	var ms []mount
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		if len(fields) < 5 || sep < 0 || sep+1 >= len(fields) {
			continue
		}
		ms = append(ms, mount{point: unescapeMount(fields[4]), fstype: fields[sep+1]})
	}
	return ms, sc.Err()
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space and so on).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Start starts containerd, imports the image, and starts the kubelet, which registers a Node named
// Name. It does not wait for the Node to be Ready. On failure it undoes what it did.
func Start(ctx context.Context, o Options) (_ *Node, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("a node needs root")
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	for _, b := range []string{"kubelet", "containerd", "containerd-shim-runc-v2", "ctr", "runc", "bridge", "host-local", "loopback", "crictl"} {
		if _, err := os.Stat(filepath.Join(o.Bin, b)); err != nil {
			return nil, fmt.Errorf("%s missing in %q: run hack/build-node.sh (make node): %w", b, o.Bin, err)
		}
	}
	before, err := snapshotHost()
	if err != nil {
		return nil, err
	}
	suffix := randomHex(3)
	n := &Node{Name: "lifelock-node-" + suffix, Bridge: "llnode" + suffix, o: o, before: before, veths: map[string]bool{}}
	if n.Subnet, err = freeSubnet(); err != nil {
		return nil, err
	}
	if n.Dir, err = os.MkdirTemp("", "lifelock-node-"); err != nil {
		return nil, err
	}
	n.Socket = filepath.Join(n.Dir, "containerd.sock")
	defer func() {
		if err != nil {
			err = errors.Join(err, n.Stop())
		}
	}()
	if err := n.createBridge(); err != nil {
		return n, err
	}
	if err := n.startContainerd(ctx); err != nil {
		return n, err
	}
	if err := n.ImportImage(ctx, n.o.Image, n.o.ImageName); err != nil {
		return n, err
	}
	if err := n.startKubelet(); err != nil {
		return n, err
	}
	return n, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// freeSubnet picks a 10.244.x.0/24 that no address of this machine is in and no route goes to.
func freeSubnet() (*net.IPNet, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	routes, _ := exec.Command("ip", "-4", "route", "show", "table", "all").Output()
	for range 64 {
		b := make([]byte, 1)
		_, _ = rand.Read(b)
		_, subnet, _ := net.ParseCIDR(fmt.Sprintf("10.244.%d.0/24", b[0]))
		taken := strings.Contains(string(routes), fmt.Sprintf("10.244.%d.", b[0]))
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && (subnet.Contains(ipn.IP) || ipn.Contains(subnet.IP)) {
				taken = true
			}
		}
		if !taken {
			return subnet, nil
		}
	}
	return nil, errors.New("no free subnet in 10.244.0.0/16")
}

// createBridge creates the Pods' bridge with the address Gateway, before the CNI bridge plugin sees it (it
// takes an existing bridge as it is, and with isGateway false it gives the bridge no address of its own).
func (n *Node) createBridge() error {
	gw := make(net.IP, 4)
	copy(gw, n.Subnet.IP.To4())
	gw[3] = 1
	n.Gateway = gw
	ones, _ := n.Subnet.Mask.Size()
	for _, args := range [][]string{
		{"link", "add", "name", n.Bridge, "type", "bridge"},
		{"addr", "add", fmt.Sprintf("%s/%d", gw, ones), "dev", n.Bridge},
		{"link", "set", n.Bridge, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// Forward accepts connections on Gateway at a free port and relays each to target (host:port on this
// machine, such as the API server on 127.0.0.1), so that Pods reach a service that listens on loopback
// only. It returns the address Pods connect to; the relay ends with ctx.
func (n *Node) Forward(ctx context.Context, target string) (string, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(n.Gateway.String(), "0"))
	if err != nil {
		return "", err
	}
	go func() {
		<-ctx.Done()
		_ = l.Close()
	}()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go relay(ctx, c, target)
		}
	}()
	return l.Addr().String(), nil
}

func relay(ctx context.Context, c net.Conn, target string) {
	defer func() { _ = c.Close() }()
	var d net.Dialer
	t, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return
	}
	defer func() { _ = t.Close() }()
	stop := context.AfterFunc(ctx, func() { _ = c.Close(); _ = t.Close() })
	defer stop()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(t, c)
	go pipe(c, t)
	<-done
	<-done
}

func (n *Node) path(elem ...string) string { return filepath.Join(append([]string{n.Dir}, elem...)...) }

func (n *Node) startContainerd(ctx context.Context) error {
	cniConf := n.path("cni", "net.d")
	if err := os.MkdirAll(cniConf, 0o755); err != nil {
		return err
	}
	// isGateway false: the plugin neither gives the bridge an address (createBridge did) nor turns on
	// ip_forward nor adds a default route in the Pods; no NAT, no routes in the Pods beyond their subnet.
	// Addresses from .10 on, clear of the bridge's .1.
	conflist := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "lifelock",
  "plugins": [{
    "type": "bridge",
    "bridge": %q,
    "isGateway": false,
    "ipMasq": false,
    "hairpinMode": false,
    "ipam": {"type": "host-local", "ranges": [[{"subnet": %q, "rangeStart": %q}]], "dataDir": %q}
  }]
}
`, n.Bridge, n.Subnet.String(), rangeStart(n.Subnet), n.path("cni", "ipam"))
	if err := os.WriteFile(filepath.Join(cniConf, "10-lifelock.conflist"), []byte(conflist), 0o644); err != nil {
		return err
	}
	// The NRI plugin would listen on /var/run/nri, the opt plugin would create /opt/containerd.
	// restrict_oom_score_adj: this machine's kernel refuses every negative oom_score_adj, even to root
	// (runc init: "failed to update /proc/self/oom_score_adj: Permission denied" for the sandbox's -998), so
	// no container gets less than containerd's own.
	config := fmt.Sprintf(`version = 3
root = %q
state = %q
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.internal.v1.opt"]

[grpc]
  address = %q

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = %q

[plugins."io.containerd.cri.v1.runtime"]
  netns_mounts_under_state_dir = true
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = [%q]
    conf_dir = %q
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
      BinaryName = %q
      Root = %q
`, n.path("containerd", "root"), n.path("containerd", "state"), n.Socket, n.o.ImageName,
		n.o.Bin, cniConf, n.runc(), n.path("runc"))
	configPath := n.path("containerd.toml")
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		return err
	}
	n.o.Logf("starting containerd (%s)", configPath)
	var err error
	n.containerd, err = startProcess(n.path("containerd.log"), n.env(),
		filepath.Join(n.o.Bin, "containerd"), "--config", configPath)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := n.ctr(ctx, "version")
		if err == nil {
			return nil
		}
		if n.containerd.exited() || time.Now().After(deadline) {
			return fmt.Errorf("containerd did not come up (see %s): %w: %s", n.path("containerd.log"), err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (n *Node) runc() string {
	if n.o.Runc != "" {
		return n.o.Runc
	}
	return filepath.Join(n.o.Bin, "runc")
}

// env is the environment of containerd (which finds its shim on PATH) and of the tools.
func (n *Node) env() []string {
	return append(os.Environ(), "PATH="+n.o.Bin+":"+os.Getenv("PATH"), "LIFELOCK_NODE_RUNC="+filepath.Join(n.o.Bin, "runc"))
}

func (n *Node) ctr(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(n.o.Bin, "ctr"), append([]string{"--address", n.Socket, "--namespace", "k8s.io"}, args...)...)
	cmd.Env = n.env()
	return cmd.CombinedOutput()
}

// Crictl runs crictl against the node's containerd and returns its combined output.
func (n *Node) Crictl(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	// A configuration file of its own, or crictl warns that /etc/crictl.yaml is missing.
	config := n.path("crictl.yaml")
	if _, err := os.Stat(config); err != nil {
		c := fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 20\n", n.Socket, n.Socket)
		if err := os.WriteFile(config, []byte(c), 0o644); err != nil {
			return nil, err
		}
	}
	cmd := exec.CommandContext(ctx, filepath.Join(n.o.Bin, "crictl"), append([]string{"--config", config}, args...)...)
	cmd.Env = n.env()
	return cmd.CombinedOutput()
}

// ImportImage imports the image archive at path (WriteImageOf) into the node's containerd, where Pods find
// it by name with imagePullPolicy Never, and checks that the CRI lists it.
func (n *Node) ImportImage(ctx context.Context, path, name string) error {
	n.o.Logf("importing %s as %s", path, name)
	if out, err := n.ctr(ctx, "images", "import", "--snapshotter", "overlayfs", path); err != nil {
		return fmt.Errorf("ctr images import %s: %w: %s", path, err, out)
	}
	out, err := n.Crictl(ctx, "images")
	if err != nil {
		return fmt.Errorf("crictl images: %w: %s", err, out)
	}
	if repo, _, _ := strings.Cut(FullName(name), ":"); !bytes.Contains(out, []byte(repo)) {
		return fmt.Errorf("the CRI does not list %s after the import: %s", name, out)
	}
	return nil
}

// rangeStart is the subnet's tenth address, where Pod addresses start.
func rangeStart(subnet *net.IPNet) string {
	ip := make(net.IP, 4)
	copy(ip, subnet.IP.To4())
	ip[3] = 10
	return ip.String()
}

func (n *Node) startKubelet() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	for _, d := range []string{"kubelet", "pod-logs"} {
		if err := os.MkdirAll(n.path(d), 0o755); err != nil {
			return err
		}
	}
	config := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://%s
imageServiceEndpoint: unix://%s
address: 127.0.0.1
port: %d
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
podLogsDir: %s
failSwapOn: false
evictionHard:
  memory.available: 50Mi
  nodefs.available: 1%%
  imagefs.available: 1%%
  nodefs.inodesFree: 1%%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
`, n.Socket, n.Socket, port, n.path("pod-logs"))
	configPath := n.path("kubelet.yaml")
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		return err
	}
	n.o.Logf("starting the kubelet (%s, node %s)", configPath, n.Name)
	n.kubelet, err = startProcess(n.path("kubelet.log"), n.env(), filepath.Join(n.o.Bin, "kubelet"),
		"--config", configPath, "--kubeconfig", n.o.Kubeconfig, "--root-dir", n.path("kubelet"),
		"--cert-dir", n.path("kubelet", "pki"),
		"--hostname-override", n.Name, "--v", "2")
	return err
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// StopKubelet stops the kubelet alone (SIGTERM, SIGKILL after 20 s): the Pods' containers keep running
// under containerd, and nobody reports the Node's status any more. Stop cleans up as usual afterwards.
func (n *Node) StopKubelet() error {
	if n.kubelet == nil {
		return errors.New("no kubelet")
	}
	n.o.Logf("stopping the kubelet; the containers keep running")
	return n.kubelet.stop(20 * time.Second)
}

// Stop stops the kubelet, removes every Pod sandbox, stops containerd, and then removes whatever is left
// of them: processes, mounts under Dir, the bridge and its veths, the kubepods cgroups, paths outside Dir
// that they created; it puts back the sysctls the kubelet changed. It returns an error naming anything it
// could not remove; Dir is kept (with the logs) if something is left, removed otherwise.
func (n *Node) Stop() error {
	var errs []error
	if n.kubelet != nil {
		n.o.Logf("stopping the kubelet")
		errs = append(errs, n.kubelet.stop(20*time.Second))
	}
	if n.containerd != nil && !n.containerd.exited() {
		n.o.Logf("removing every Pod sandbox")
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		if out, err := n.Crictl(ctx, "rmp", "--all", "--force"); err != nil {
			errs = append(errs, fmt.Errorf("crictl rmp --all --force: %w: %s", err, out))
		}
		cancel()
		n.o.Logf("stopping containerd")
		errs = append(errs, n.containerd.stop(20*time.Second))
	}
	n.recordVeths()
	errs = append(errs, n.cleanUp()...)
	left := n.Leftovers()
	for _, l := range left {
		errs = append(errs, errors.New("left over: "+l))
	}
	if len(left) == 0 && n.Dir != "" {
		errs = append(errs, os.RemoveAll(n.Dir))
	} else if n.Dir != "" {
		n.o.Logf("keeping %s", n.Dir)
	}
	return errors.Join(errs...)
}

// recordVeths remembers the host ends of the veths on the bridge.
func (n *Node) recordVeths() {
	out, err := exec.Command("ip", "-o", "link", "show", "master", n.Bridge).Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		// "7: veth1234@if2: <...> ... master llnodeXXXX ..."
		fields := strings.Fields(line)
		if len(fields) > 1 {
			name, _, _ := strings.Cut(strings.TrimSuffix(fields[1], ":"), "@")
			n.veths[name] = true
		}
	}
}

// cleanUp removes what the node's programs may have left behind.
func (n *Node) cleanUp() []error {
	var errs []error
	// Processes: the shims and the containers they ran, found by what only this node's processes have.
	for _, pid := range n.strayProcesses() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	waitUntil(5*time.Second, func() bool { return len(n.strayProcesses()) == 0 })

	// Mounts under Dir (rootfs overlays, shm, network namespaces), innermost first.
	if mounts, err := readMounts(); err == nil && n.Dir != "" {
		for i := len(mounts) - 1; i >= 0; i-- {
			if p := mounts[i].point; p == n.Dir || strings.HasPrefix(p, n.Dir+"/") {
				if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
					errs = append(errs, fmt.Errorf("unmounting %s: %w", p, err))
				}
			}
		}
	}

	// The veths and the bridge.
	for v := range n.veths {
		if linkExists(v) {
			if out, err := exec.Command("ip", "link", "del", v).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("ip link del %s: %w: %s", v, err, out))
			}
		}
	}
	if linkExists(n.Bridge) {
		if out, err := exec.Command("ip", "link", "del", n.Bridge).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip link del %s: %w: %s", n.Bridge, err, out))
		}
	}

	// The kubelet's cgroups (kubepods and below, in every hierarchy), deepest first, unless they predate Start.
	for h, existed := range n.before.kubepod {
		if existed {
			continue
		}
		var dirs []string
		_ = filepath.WalkDir(filepath.Join(h, "kubepods"), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := syscall.Rmdir(dirs[i]); err != nil && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("removing cgroup %s: %w", dirs[i], err))
			}
		}
	}

	// The kubelet's sysctls.
	for k, v := range n.before.sysctls {
		if cur, err := os.ReadFile(filepath.Join("/proc/sys", k)); err == nil && strings.TrimSpace(string(cur)) != v {
			n.o.Logf("restoring %s to %s (was %s)", k, v, strings.TrimSpace(string(cur)))
			if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644); err != nil {
				errs = append(errs, fmt.Errorf("restoring sysctl %s: %w", k, err))
			}
		}
	}

	// Paths outside Dir that did not exist before Start, so the node's programs made them (the kubelet's
	// device-plugin socket is always /var/lib/kubelet/device-plugins/kubelet.sock, whatever --root-dir says).
	// Removed unless something is mounted below.
	mounts, _ := readMounts()
	for p, existed := range n.before.paths {
		if existed {
			continue
		}
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		if slices.ContainsFunc(mounts, func(m mount) bool { return m.point == p || strings.HasPrefix(m.point, p+"/") }) {
			errs = append(errs, fmt.Errorf("not removing %s: something is mounted below it", p))
			continue
		}
		var files []string
		_ = filepath.WalkDir(p, func(f string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				files = append(files, f)
			}
			return nil
		})
		n.o.Logf("removing %s, made while the node ran (files: %v)", p, files)
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// strayProcesses are the processes of this node still alive: any whose command line or environment names
// Dir (kubelet, containerd, shims, runc), and any in a kubepods cgroup the node created.
func (n *Node) strayProcesses() []int {
	if n.Dir == "" {
		return nil
	}
	ownKubepods := false
	for _, existed := range n.before.kubepod {
		ownKubepods = ownKubepods || !existed
	}
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		cgroup, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		if bytes.Contains(cmdline, []byte(n.Dir+"/")) || (ownKubepods && bytes.Contains(cgroup, []byte(":/kubepods"))) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Leftovers lists what the node left on this machine: processes, mounts under Dir, network namespaces, the
// bridge and its veths, kubepods cgroups, paths outside Dir, changed sysctls.
func (n *Node) Leftovers() []string {
	var left []string
	for _, p := range []*process{n.kubelet, n.containerd} {
		if p != nil && !p.exited() {
			left = append(left, fmt.Sprintf("process %d (%s)", p.cmd.Process.Pid, filepath.Base(p.cmd.Path)))
		}
	}
	for _, pid := range n.strayProcesses() {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		left = append(left, fmt.Sprintf("process %d: %s", pid, strings.ReplaceAll(string(cmdline), "\x00", " ")))
	}
	if mounts, err := readMounts(); err == nil && n.Dir != "" {
		for _, m := range mounts {
			if m.point == n.Dir || strings.HasPrefix(m.point, n.Dir+"/") {
				left = append(left, fmt.Sprintf("mount %s (%s)", m.point, m.fstype))
			}
		}
	}
	if linkExists(n.Bridge) {
		left = append(left, "bridge "+n.Bridge)
	}
	for v := range n.veths {
		if linkExists(v) {
			left = append(left, "veth "+v)
		}
	}
	for h, existed := range n.before.kubepod {
		if _, err := os.Stat(filepath.Join(h, "kubepods")); err == nil && !existed {
			left = append(left, "cgroup "+filepath.Join(h, "kubepods"))
		}
	}
	for p, existed := range n.before.paths {
		if _, err := os.Lstat(p); err == nil && !existed {
			left = append(left, "path "+p)
		}
	}
	for k, v := range n.before.sysctls {
		if cur, err := os.ReadFile(filepath.Join("/proc/sys", k)); err == nil && strings.TrimSpace(string(cur)) != v {
			left = append(left, fmt.Sprintf("sysctl %s = %s (was %s)", k, strings.TrimSpace(string(cur)), v))
		}
	}
	slices.Sort(left)
	return left
}

func linkExists(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}

func waitUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}

// process is a program the node started, in a process group of its own, its output in a log file.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func startProcess(logPath string, env []string, name string, args ...string) (*process, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, then SIGKILL after grace.
func (p *process) stop(grace time.Duration) error {
	if p.exited() {
		return nil
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
	return fmt.Errorf("%s did not stop within %s of SIGTERM; killed", filepath.Base(p.cmd.Path), grace)
}
