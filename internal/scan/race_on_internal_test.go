//go:build race

package scan

// raceEnabled: the race detector slows regular expressions about 15-fold,
// so the engine comparisons run on a sample of the rules under it.
const raceEnabled = true
