// Package admin serves the operator's endpoints on their own listener: /livez, /readyz (for
// Kubernetes probes and load balancers), /status (the pool as JSON) and /metrics (Prometheus).
package admin
