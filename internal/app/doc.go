// Package app assembles a running warmpool from a validated config: the front and admin
// listeners, the balancer, the pool, and the signal handling operators expect (SIGTERM and
// SIGINT drain and exit, SIGHUP rolls the workers to a new generation).
package app
