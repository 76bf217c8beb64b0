// Package testworker is the worker process of warmpool's own tests: a test binary re-executes
// itself and, seeing EnvActive, runs Main instead of its tests. Behaviour is chosen with
// environment variables so a test can make a worker cold, broken, slow, crashing or notifying.
package testworker
