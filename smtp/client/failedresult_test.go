package client

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A transaction that never got a session lasted from its first connection
// attempt to its last, and no time at all without one (it used to report
// the age of the zero time, 292 years, in xdelay= and AttemptFinished).
func TestFailedResultDuration(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	attempts := []Attempt{
		{Host: "a", Stage: StageConnect, Start: t0, Finish: t0.Add(time.Second)},
		{Host: "b", Stage: StageConnect, Start: t0.Add(time.Second), Finish: t0.Add(3 * time.Second)},
	}
	env := &Envelope{Rcpts: []Recipient{{Addr: "x@y"}}}
	res := FailedResult(env, attempts, &ConnectError{Attempts: attempts})
	require.Equal(t, 3*time.Second, res.Duration())

	res = FailedResult(env, nil, errors.New("no route"))
	require.Equal(t, time.Duration(0), res.Duration())
	res = FailedResult(env, nil, &ConnectError{})
	require.Equal(t, time.Duration(0), res.Duration())
}
