//go:build !race

package lifelock

const raceEnabled = false
