package config

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: no document may panic the loader or the rules, and an accepted document must
// explain itself. Seeds: every file under testdata/.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.toml")
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("[[warmup.request]]\n[[warmup.request]]\nrepeat = -1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := Parse("fuzz.toml", data)
		if err != nil {
			return
		}
		_ = l.Validate()
		l.Explain(discard{}, false)
		l.Explain(discard{}, true)
		_ = l.WarmupSummary()
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
