// Package worker runs one worker process: its socket, its process made through a Launcher (exec
// of the command template here; a fork of a warm Python template in internal/pyfork), its state
// machine (starting, warming, ready, draining, stopped, failed), its memory and CPU, and its
// stop, gracefully, then by force.
//
// A Worker never decides when it enters rotation; the pool does.
package worker
