// Package learn lets traffic extend the warm-up plan, which covers what its author remembered.
//
// Two things are learned. From outside the workers: the paths whose first request on a new
// worker was far slower than the pool's steady latency for them (the warm-up check's
// evidence), which become warm-up requests run after the operator's plan. From inside a Python
// app's forked workers: the modules each imported after its fork, which the next template
// imports before its warm-up, so that its children start with them. What was learned is kept
// in a state file a restart reuses, shown in /status and printed as config to commit
// (`warmpool learned`).
//
// Learned requests are safe by construction (safety.go): GET or HEAD, from requests that
// carried no credentials, to paths that answered 2xx and look like no secret, at most
// MaxRequests of them, the most costly first; each is sent without the client's headers and
// must answer 2xx in every warm-up or it is dropped. Learned imports that fail, start threads or
// open connections in the template are dropped, named in a WARN.
//
// The Learner decides when what it learned is worth a template rebuild (schedule.go); the pool
// carries the rebuild out as a reload of the same code.
package learn
