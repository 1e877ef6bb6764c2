package harness

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Process is a candidate program running as a separate OS process, either as the container of a Pod
// (StartPodProcess) or as a plain local process (StartProcess, a program run on a laptop).
type Process struct {
	// Pod is the Pod whose container the process plays, or nil.
	Pod *corev1.Pod

	cmd  *exec.Cmd
	out  lockedBuffer
	done chan struct{} // closed once the process has exited; err says how
	err  error
}

// StartPodProcess starts program with args as the container of pod, the way kubelet would run it (see
// sandbox_linux.go): its hostname is the Pod's name and the service-account namespace file holds the Pod's
// namespace, while env is passed on without POD_NAME and POD_NAMESPACE. The Pod's IPs must be unpublished
// yet (CreatePendingPod; StartContainer publishes them once the process runs) or include a local,
// non-loopback one (CreatePod writes one, and a restarted container keeps it), so the program can prove the
// Pod is its own.
func StartPodProcess(pod *corev1.Pod, env []string, program string, args ...string) (*Process, error) {
	if len(pod.Status.PodIPs) > 0 && !podIPIsLocal(pod) {
		return nil, fmt.Errorf("pod %s/%s has no local non-loopback IP (status.podIPs %v); create it with CreatePod or CreatePendingPod", pod.Namespace, pod.Name, pod.Status.PodIPs)
	}
	cmd, err := sandboxCommand(pod.Namespace, pod.Name, env, program, args...)
	if err != nil {
		return nil, err
	}
	p := &Process{Pod: pod, cmd: cmd}
	return p, p.start()
}

// StartProcess starts program with args as a plain local process with env, outside any Pod.
func StartProcess(env []string, program string, args ...string) (*Process, error) {
	cmd := exec.Command(program, args...)
	cmd.Env = withoutPodEnv(env)
	cmd.SysProcAttr = processAttr()
	p := &Process{cmd: cmd}
	return p, p.start()
}

func (p *Process) start() error {
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.done = make(chan struct{})
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", p.cmd.Path, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return nil
}

// Pid is the process's ID. A Pod's process keeps it when the sandbox executes the program (see
// sandbox_linux.go), so it names the program, as /proc/<pid> does.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitCode is the process's exit code once Done is closed (-1 if a signal ended it).
func (p *Process) ExitCode() int {
	<-p.done
	return p.cmd.ProcessState.ExitCode()
}

// Output is everything the process wrote to stdout and stderr so far.
func (p *Process) Output() string { return p.out.String() }

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error {
	select {
	case <-p.done:
		return fmt.Errorf("process %d has exited", p.cmd.Process.Pid)
	default:
		return p.cmd.Process.Signal(sig)
	}
}

// Stop sends SIGTERM, as kubelet does, and SIGKILL if the process has not exited within grace. It returns
// the process's exit error unless the process exited after SIGTERM with status 0.
func (p *Process) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("process %d ignored SIGTERM for %s and was killed", p.cmd.Process.Pid, grace)
	}
}

// Kill sends SIGKILL and waits for the process to exit.
func (p *Process) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// podEnv are the variables that would tell a program its Pod; the harness never passes them on.
var podEnv = []string{"POD_NAME", "POD_NAMESPACE", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"}

func withoutPodEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, p := range podEnv {
			drop = drop || name == p
		}
		if !drop {
			out = append(out, kv)
		}
	}
	return out
}

// LocalIP returns an address of this machine that is neither loopback nor link-local: the IP CreatePod
// writes for its Pods, so that a process in a Pod's sandbox finds its Pod's IP among its own addresses.
func LocalIP() (string, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String(), nil
		}
	}
	return "", errors.New("this machine has no IPv4 address but loopback and link-local ones")
}

func podIPIsLocal(pod *corev1.Pod) bool {
	ip, err := LocalIP()
	if err != nil {
		return false
	}
	for _, p := range pod.Status.PodIPs {
		if p.IP == ip {
			return true
		}
	}
	return false
}

// lockedBuffer is a bytes.Buffer safe for the process's writes and the test's reads at once.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
