package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// Load reads a TOML file over Default, rejecting unknown keys, then fills per-request defaults.
// It does not validate; call Validate.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes TOML from data; name is used in error messages (a file name).
func Parse(name string, data []byte) (Config, error) {
	cfg := Default()
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return Config{}, describeDecodeError(name, err)
	}
	cfg.applyRequestDefaults()
	return cfg, nil
}

func (c *Config) applyRequestDefaults() {
	for i := range c.Warmup.Requests {
		r := &c.Warmup.Requests[i]
		if r.Method == "" {
			r.Method = http.MethodGet
		}
		r.Method = strings.ToUpper(r.Method)
		if r.Repeat == 0 {
			r.Repeat = 1
		}
	}
}

// describeDecodeError turns the TOML library's errors into "file:line: key: message" lines.
func describeDecodeError(name string, err error) error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		lines := make([]string, 0, len(strict.Errors))
		for i := range strict.Errors {
			e := &strict.Errors[i]
			row, _ := e.Position()
			lines = append(lines, fmt.Sprintf("%s:%d: unknown key %q", name, row, strings.Join(e.Key(), ".")))
		}
		return fmt.Errorf("config: %s", strings.Join(lines, "; "))
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, _ := de.Position()
		key := strings.Join(de.Key(), ".")
		if key != "" {
			return fmt.Errorf("config: %s:%d: %s: %w", name, row, key, err)
		}
		return fmt.Errorf("config: %s:%d: %w", name, row, err)
	}
	return fmt.Errorf("config: %s: %w", name, err)
}
