package telemetry

// Recorder is the front's Observer: metrics, the warm-up check and the access log.
type Recorder struct {
	Metrics *Metrics     // nil: none
	Check   *WarmupCheck // nil: none
	Access  *AccessLog   // nil: off
	History *History     // nil: none
}

// ObserveRequest records one finished request everywhere it belongs.
func (r *Recorder) ObserveRequest(req *Request) {
	r.Metrics.ObserveRequest(req)
	if r.Check != nil {
		r.Check.Observe(req)
	}
	r.Access.Write(req)
	if r.History != nil {
		r.History.Observe(req)
	}
}
