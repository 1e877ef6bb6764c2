package lifelock

import (
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/resourceversion"
)

// Term identifies one leader's tenure of a lock: a fencing epoch. A process leads for at most one term (a
// lock that was lost never acquires again), so the term is fixed from the moment Become returns or the
// manager starts its controllers.
//
// Stamp what the leader writes with Term.String, and before acting on an object, compare its stamp with the
// current term: a stamp from a later term (Term.Before) means this leader has been superseded and must stop.
// See the package example "Term". Package github.com/lifelock/lifelock/pkg/fencing stamps every write of a
// client with the term and has the API server refuse writes stamped with any other.
type Term struct {
	// Number is the lock's term number: spec.leaseTransitions of a Lease lock (the TransitionsAnnotation of a
	// ConfigMap lock), incremented by every takeover. A lock that is deleted and created again starts over at
	// 0, so Number alone does not order terms; Revision does.
	Number int32
	// LockUID is the UID of the lock object the term was won on.
	LockUID string
	// Revision is the resourceVersion of the lock object as the acquisition's last write stored it (the
	// SettledAnnotation mark, for an acquisition that wrote the lock unsettled; as read, for a container
	// restart of the holder that writes nothing). Revisions of one cluster are ordered
	// (k8s.io/apimachinery/pkg/util/resourceversion), and every acquisition writes, so a later term has a
	// greater Revision even when the lock object was created again.
	Revision string
}

// String is the term's stamp: "<number>/<lock UID>/<revision>". ParseTerm reads it back.
func (t Term) String() string {
	return strconv.Itoa(int(t.Number)) + "/" + t.LockUID + "/" + t.Revision
}

// IsZero reports whether t is the zero Term (no term).
func (t Term) IsZero() bool { return t == Term{} }

// ParseTerm reads a stamp written by Term.String.
func ParseTerm(s string) (Term, error) {
	parts := strings.Split(s, "/")
	if len(parts) != 3 {
		return Term{}, fmt.Errorf("term %q: want <number>/<lock UID>/<revision>", s)
	}
	n, err := strconv.ParseInt(parts[0], 10, 32)
	if err != nil || n < 0 {
		return Term{}, fmt.Errorf("term %q: the number must be a non-negative integer", s)
	}
	if parts[1] == "" {
		return Term{}, fmt.Errorf("term %q: the lock UID is empty", s)
	}
	t := Term{Number: int32(n), LockUID: parts[1], Revision: parts[2]}
	if _, err := resourceversion.CompareResourceVersion(t.Revision, t.Revision); err != nil {
		return Term{}, fmt.Errorf("term %q: revision: %w", s, err)
	}
	return t, nil
}

// Before reports whether t is an earlier term than u: its acquisition was written before u's. Two stamps of
// the same term are not before each other. It fails only for a Revision that is not a resourceVersion of
// an etcd-backed API server (ParseTerm checks that).
func (t Term) Before(u Term) (bool, error) {
	c, err := resourceversion.CompareResourceVersion(t.Revision, u.Revision)
	if err != nil {
		return false, fmt.Errorf("comparing terms %s and %s: %w", t, u, err)
	}
	return c < 0, nil
}
