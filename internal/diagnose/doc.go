// Package diagnose checks a warm-up plan against the real app: it starts one worker without
// warm-up and measures the first request to each path (cold), starts a second worker, runs the
// warm-up plan and measures the first requests again (warmed), and compares both with the
// steady latency. A path whose warmed first request is still far above steady is one the plan
// does not cover, as in the post-mortem where the warm-up was rejected by a host check.
package diagnose
