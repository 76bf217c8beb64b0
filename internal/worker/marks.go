package worker

// CountMark is a count of client requests at which the pool acts on a worker in rotation: the
// rotation calls Reached once, on the goroutine of the request that reached At (it must not
// block). With Retire, that request is the worker's last: it leaves rotation at once, before any
// other request can be given to it.
type CountMark struct {
	At      int64
	Reached func()
	Retire  bool
}
