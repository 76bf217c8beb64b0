package proxy

import (
	"fmt"
	"io"
	"os"
	"sync"
)

// A response is buffered, as nginx does, so that a worker is released when it has sent its
// response, not when a slow client has read it: what the client cannot take yet waits in a
// spill, in memory up to spillMemory and then in an unlinked temporary file, up to
// Options.MaxBufferedResponse bytes at once (past that, the worker is held again until the
// client catches up). A client that keeps up never touches it: its bytes go straight out.

// spillMemory is how much of a spill stays in memory before it moves to a file.
const spillMemory = 64 << 10

// spill is a byte queue from the reader of a worker's response to the writer to a client.
// Write never waits, unless limit bytes are queued; Read waits for bytes, and reports io.EOF
// once CloseWrite was called and everything was read.
type spill struct {
	mu     sync.Mutex
	more   sync.Cond // signalled when bytes are queued, or the writer closes
	room   sync.Cond // signalled when bytes are read, or the reader fails
	limit  int64
	mem    []byte   // queued bytes while in memory
	file   *os.File // once the queue outgrew memory
	rOff   int64    // in file: the next byte to read
	wOff   int64    // in file: where the next byte goes
	closed bool     // no more writes
	err    error    // the reader failed: writes fail with it
}

func newSpill(limit int64) *spill {
	s := &spill{limit: limit}
	s.more.L, s.room.L = &s.mu, &s.mu
	return s
}

func (s *spill) queuedLocked() int64 {
	if s.file != nil {
		return s.wOff - s.rOff
	}
	return int64(len(s.mem))
}

// Write queues a copy of p.
func (s *spill) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.err == nil && s.limit > 0 && s.queuedLocked() > 0 && s.queuedLocked()+int64(len(p)) > s.limit {
		s.room.Wait() // backpressure: the client must catch up first
	}
	if s.err != nil {
		return 0, s.err
	}
	if s.file == nil && len(s.mem)+len(p) > spillMemory {
		f, err := os.CreateTemp("", "warmpool-response-*")
		if err != nil {
			return 0, fmt.Errorf("response buffer: %w", err)
		}
		os.Remove(f.Name()) // the open file lives on; nothing is left if warmpool dies
		if _, err := f.Write(s.mem); err != nil {
			f.Close()
			return 0, fmt.Errorf("response buffer: %w", err)
		}
		s.file, s.rOff, s.wOff, s.mem = f, 0, int64(len(s.mem)), s.mem[:0]
	}
	if s.file != nil {
		if _, err := s.file.WriteAt(p, s.wOff); err != nil {
			return 0, fmt.Errorf("response buffer: %w", err)
		}
		s.wOff += int64(len(p))
	} else {
		s.mem = append(s.mem, p...)
	}
	s.more.Signal()
	return len(p), nil
}

// Read takes queued bytes into p, waiting for some.
func (s *spill) Read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.queuedLocked() == 0 {
		if s.closed || s.err != nil {
			return 0, io.EOF
		}
		s.more.Wait()
	}
	var n int
	if s.file != nil {
		var err error
		n, err = s.file.ReadAt(p[:min(int64(len(p)), s.wOff-s.rOff)], s.rOff)
		if n == 0 && err != nil {
			return 0, fmt.Errorf("response buffer: %w", err)
		}
		s.rOff += int64(n)
	} else {
		n = copy(p, s.mem)
		s.mem = s.mem[:copy(s.mem, s.mem[n:])]
	}
	s.room.Broadcast()
	return n, nil
}

// CloseWrite says that no more bytes come.
func (s *spill) CloseWrite() {
	s.mu.Lock()
	s.closed = true
	s.more.Broadcast()
	s.mu.Unlock()
}

// Fail makes writes fail with err (the client is gone) and wakes a waiting writer.
func (s *spill) Fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.room.Broadcast()
	s.more.Broadcast()
	s.mu.Unlock()
}

// Release frees the file; the spill must not be used after.
func (s *spill) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.file != nil {
		s.file.Close()
		s.file = nil
	}
	s.mem = nil
}
