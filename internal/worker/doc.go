// Package worker runs one worker process: it spawns the command template with its own socket,
// tracks the worker's state machine (starting, warming, ready, draining, stopped, failed),
// counts its requests, samples its memory, and stops it gracefully, then by force.
//
// A Worker never decides when it enters rotation; the pool does.
package worker
