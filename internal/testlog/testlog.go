// Package testlog captures what the code under test logs (a slog handler's
// output, or a child process's stdout and stderr) so that a test can read it
// while it is still being written.
package testlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"sync"
)

// Buffer collects written bytes; it is safe for concurrent use, so a
// logger or a process may write while the test reads. The zero value is
// an empty buffer ready to use.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p to the buffer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Records returns the JSON log lines written so far, decoded; lines that
// are not a JSON object are skipped.
func (b *Buffer) Records() []map[string]any {
	var recs []map[string]any
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec != nil {
			recs = append(recs, rec)
		}
	}
	return recs
}
