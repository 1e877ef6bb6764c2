//go:build race

package lifelock

// raceEnabled: the race detector makes the simulation about ten times slower, so a race run explores fewer
// schedules (make test also runs it without the detector).
const raceEnabled = true
