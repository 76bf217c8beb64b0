// Package guard makes sure that no process of a worker outlives warmpool, and that none stays
// a zombie while warmpool runs.
//
// Process groups and the parent-death signal cover a worker that is warmpool's direct child;
// they miss what a worker starts in turn when warmpool dies by SIGKILL: the app behind
// `sh -c "app {socket}; echo done"` (the shape of npm start and every wrapper script) would go
// on listening, with parent 1. So:
//
//   - every process warmpool starts carries EnvInstance in its environment, and passes it on
//     to its own children;
//   - a keeper process (warmpool itself, re-executed) waits for warmpool's end on a pipe, which
//     the kernel closes however warmpool ends, then kills every process that carries this
//     instance's mark and removes warmpool's socket directory;
//   - warmpool is a child subreaper: descendants orphaned while it runs (double-forked helpers)
//     become its children, and the Reaper collects them when they exit.
//
// The keeper is warmpool's binary started with an environment variable: every main (the
// command's, and the test binaries' that act as warmpool) calls RunIfKeeper first.
package guard
