package proxy

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// A spill hands on every byte in order, across its move from memory to a file.
func TestSpillKeepsOrderAcrossMemoryAndFile(t *testing.T) {
	sp := newSpill(0)
	defer sp.Release()
	var want bytes.Buffer
	for i := range 300 { // 300 x 1 KiB: past spillMemory
		chunk := bytes.Repeat([]byte{byte(i)}, 1024)
		want.Write(chunk)
		if _, err := sp.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if sp.file == nil {
		t.Fatal("still in memory past spillMemory")
	}
	sp.CloseWrite()
	got, err := io.ReadAll(sp)
	if err != nil || !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("read %d bytes (want %d), err %v", len(got), want.Len(), err)
	}
}

// Past its limit a write waits until the reader takes bytes; a failed reader ends the wait.
func TestSpillLimitHoldsTheWriter(t *testing.T) {
	sp := newSpill(10)
	defer sp.Release()
	sp.Write(make([]byte, 8))
	wrote := make(chan error, 1)
	go func() { _, err := sp.Write(make([]byte, 8)); wrote <- err }()
	buf := make([]byte, 8)
	if n, _ := sp.Read(buf); n != 8 { // makes room
		t.Fatalf("read %d", n)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	sp.Write(make([]byte, 2))
	go func() { _, err := sp.Write(make([]byte, 8)); wrote <- err }()
	gone := errors.New("client gone")
	sp.Fail(gone)
	if err := <-wrote; !errors.Is(err, gone) {
		t.Fatalf("blocked write after Fail: %v", err)
	}
}
