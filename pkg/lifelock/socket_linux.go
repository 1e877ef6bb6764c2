package lifelock

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"
)

// socketName is the abstract Unix socket that keeps two processes of one Pod from both taking the "held by
// this Pod" path: the Pod's containers share one network namespace, and the kernel frees the name when the
// process holding it dies.
func (l *Lock) socketName() string {
	sum := sha256.Sum256([]byte(l.own.UID + "/" + l.namespace + "/" + l.name))
	return "@lifelock-" + hex.EncodeToString(sum[:16])
}

// holdSocket takes the socket, waiting while another process of this Pod holds it, and keeps it until the
// lock is closed.
func (l *Lock) holdSocket() {
	name := l.socketName()
	logged := false
	for {
		ln, err := net.Listen("unix", name)
		if err == nil {
			l.mu.Lock()
			l.core.socketHeld = true
			l.notifyLocked()
			l.mu.Unlock()
			<-l.ctx.Done()
			_ = ln.Close()
			return
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			// Not another process of this Pod: without the socket this process cannot tell a restart of
			// its own container from a second candidate in the Pod, so it never acquires; Get says why.
			l.mu.Lock()
			l.socketErr = fmt.Errorf("taking the per-Pod socket %s, which keeps two processes of one Pod from both leading: %w", name, err)
			l.notifyLocked()
			l.mu.Unlock()
			return
		}
		if !logged {
			logged = true
			l.log.Info("Another process of this Pod is a candidate for this lock; waiting for it to exit", "socket", name)
		}
		t := time.NewTimer(l.opts.RetryPeriod)
		select {
		case <-l.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
