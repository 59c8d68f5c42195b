//go:build !linux

package source

import "sync/atomic"

var besideLoads atomic.Uint64 // never counts: loads are paced

// runBeside needs Linux's SCHED_IDLE; elsewhere loads keep the pacer.
func runBeside(func()) bool { return false }
