// Package admin serves the operator's endpoints on their own listener: /livez, /readyz (for
// Kubernetes probes and load balancers) and /status (the pool as JSON).
package admin
