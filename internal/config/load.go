package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// EnvPrefix starts every environment variable that sets a config value: WARMPOOL_SECTION_KEY.
const EnvPrefix = "WARMPOOL_"

// reservedEnv are WARMPOOL_ variables that are not settings (warmpool gives them to workers).
// WARMPOOL_INSTANCE and WARMPOOL_GUARD_OF are internal/guard's (a warmpool may run as another's
// worker, and the keeper is warmpool's own binary).
var reservedEnv = []string{"WARMPOOL_WORKER_ID", "WARMPOOL_SOCKET", "WARMPOOL_GENERATION",
	"WARMPOOL_INSTANCE", "WARMPOOL_GUARD_OF", EnvAdminToken}

// EnvAdminToken is the admin token from the environment (a Kubernetes Secret as a variable).
const EnvAdminToken = "WARMPOOL_ADMIN_TOKEN"

// secretEnv are warmpool's own secrets: read from its environment, never passed on to a
// process it starts (a worker, a Python template, the keeper), where app code or a debug page
// that prints the environment would reveal them.
var secretEnv = []string{EnvAdminToken}

// ChildEnv is the environment a process warmpool starts inherits: environ (warmpool's own,
// "NAME=value") less warmpool's secrets. It is the one place that decides what is withheld.
func ChildEnv(environ []string) []string {
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(secretEnv, name) {
			out = append(out, kv)
		}
	}
	return out
}

// Layers are the inputs of a configuration, lowest first after the defaults.
type Layers struct {
	// Files are the TOML files, each a layer over the ones before it (a key a later file sets
	// replaces the earlier value whole, an array of tables included); none means none.
	Files []string
	// Env is the environment ("NAME=value"); only WARMPOOL_ variables are read.
	Env []string
	// Sets are "key=value" overrides from the command line (--set).
	Sets []string
}

// Load builds the effective configuration from the defaults and the layers. The error lists
// every problem found (unknown keys, wrong types, bad values), each with its source; it does
// not apply the cross-setting rules: call Validate.
func Load(layers Layers) (*Loaded, error) {
	ld, err := loadLayers(layers)
	if err != nil {
		return nil, err
	}
	if len(ld.errs) > 0 {
		return nil, errors.Join(ld.errs...)
	}
	return ld.l, nil
}

// loadLayers applies every layer over the defaults, collecting the decoding problems in ld.errs.
func loadLayers(layers Layers) (*loader, error) {
	ld := &loader{l: &Loaded{Config: Default(), sources: map[string]Source{}}}
	for _, name := range layers.Files {
		data, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		ld.file(name, data)
	}
	ld.env(layers.Env)
	ld.sets(layers.Sets)
	ld.l.applyRequestDefaults()
	return ld, nil
}

// LoadAndValidate is Load then Validate, listing every problem of both stages. A rule that
// involves a setting which failed to decode is left out: it would speak of a default the
// operator never chose.
func LoadAndValidate(layers Layers) (*Loaded, error) {
	ld, err := loadLayers(layers)
	if err != nil {
		return nil, err
	}
	errs := ld.errs
	for _, e := range unwrapAll(ld.l.Validate()) {
		if !mentionsAny(e.Error(), ld.failed) {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return ld.l, nil
}

func unwrapAll(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func mentionsAny(msg string, keys []string) bool {
	for _, k := range keys {
		if strings.Contains(msg, k) {
			return true
		}
	}
	return false
}

// Parse loads a TOML document alone (name is used in messages as the file name).
func Parse(name string, data []byte) (*Loaded, error) {
	ld := &loader{l: &Loaded{Config: Default(), sources: map[string]Source{}}}
	ld.file(name, data)
	if len(ld.errs) > 0 {
		return nil, errors.Join(ld.errs...)
	}
	ld.l.applyRequestDefaults()
	return ld.l, nil
}

type loader struct {
	l      *Loaded
	errs   []error
	failed []string // keys whose value could not be decoded
}

func (ld *loader) fail(format string, args ...any) {
	ld.errs = append(ld.errs, fmt.Errorf(format, args...))
}

func (ld *loader) file(name string, data []byte) {
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			ld.fail("%s:%d:%d: invalid TOML: %v", name, row, col, de.Error())
			return
		}
		ld.fail("%s: invalid TOML: %v", name, err)
		return
	}
	f := &fileWalk{ld: ld, name: name, lines: indexLines(data)}
	f.table(rootSchema, reflect.ValueOf(&ld.l.Config).Elem(), doc, "")
}

// fileWalk assigns a decoded document to the config, key by key, so every problem is found.
type fileWalk struct {
	ld    *loader
	name  string
	lines map[string]int
}

func (f *fileWalk) where(key string) string {
	for k := key; k != ""; {
		if line, ok := f.lines[k]; ok {
			return fmt.Sprintf("%s:%d", f.name, line)
		}
		i := strings.LastIndexAny(k, ".[")
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return f.name
}

func (f *fileWalk) table(tb *table, root reflect.Value, doc map[string]any, prefix string) {
	names := make([]string, 0, len(doc))
	for n := range doc {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		raw, key := doc[name], prefix+name
		if fd, ok := tb.fields[name]; ok {
			if err := assign(root.FieldByIndex(fd.index), fd.kind, raw); err != nil {
				f.ld.fail("%s: %s: %v", f.where(key), key, err)
				f.ld.failed = append(f.ld.failed, key)
				continue
			}
			f.ld.l.sources[key] = Source{Kind: FromFile, Where: f.where(key)}
			continue
		}
		if sub, ok := tb.tables[name]; ok {
			m, ok := raw.(map[string]any)
			if !ok {
				f.ld.fail("%s: %s: want a table ([%s]), got %s", f.where(key), key, key, describeValue(raw))
				continue
			}
			f.table(sub, root, m, key+".")
			continue
		}
		if elem, ok := tb.arrays[name]; ok {
			f.array(elem, root.FieldByIndex(tb.index[name]), raw, key)
			continue
		}
		f.ld.fail("%s: unknown key %q%s", f.where(key), key, suggestKey(tb, prefix, name))
	}
}

func (f *fileWalk) array(elem *table, slice reflect.Value, raw any, key string) {
	list, ok := raw.([]any)
	if !ok {
		f.ld.fail("%s: %s: want an array of tables ([[%s]]), got %s", f.where(key), key, key, describeValue(raw))
		return
	}
	out := reflect.MakeSlice(slice.Type(), len(list), len(list))
	for i, e := range list {
		ek := fmt.Sprintf("%s[%d]", key, i)
		m, ok := e.(map[string]any)
		if !ok {
			f.ld.fail("%s: %s: want a table, got %s", f.where(ek), ek, describeValue(e))
			continue
		}
		f.ld.l.sources[ek] = Source{Kind: FromFile, Where: f.where(ek)}
		f.table(elem, out.Index(i), m, ek+".")
	}
	slice.Set(out)
	f.ld.l.sources[key] = Source{Kind: FromFile, Where: f.where(key + "[0]")}
}

// suggestKey proposes the setting a mistyped key probably meant.
func suggestKey(tb *table, prefix, name string) string {
	var here []string
	for n := range tb.fields {
		here = append(here, n)
	}
	for n := range tb.tables {
		here = append(here, n)
	}
	for n := range tb.arrays {
		here = append(here, n)
	}
	sort.Strings(here)
	if best, ok := nearest(name, here); ok {
		return fmt.Sprintf(" (did you mean %q?)", prefix+best)
	}
	// The right name in the wrong section?
	for _, k := range leafKeys {
		if strings.HasSuffix(k, "."+name) || k == name {
			return fmt.Sprintf(" (did you mean %q? it belongs in a different section)", k)
		}
	}
	if best, ok := nearest(prefix+name, leafKeys); ok {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return ""
}

// indexLines maps every key of the document ("worker.count", "warmup.request[1].path") to
// the line it is written on.
func indexLines(data []byte) map[string]int {
	lines := map[string]int{}
	p := unstable.Parser{}
	p.Reset(data)
	prefix := ""
	counts := map[string]int{}
	// Lines are counted forward from the last key's (expressions come in document order):
	// the parser's Shape counts from the document's start each time, quadratic in its size.
	at, atLine := 0, 1
	lineOf := func(off int) int {
		if off < at {
			at, atLine = 0, 1
		}
		atLine += bytes.Count(data[at:off], []byte{'\n'})
		at = off
		return atLine
	}
	for p.NextExpression() {
		e := p.Expression()
		var parts []string
		line := 0
		for it := e.Key(); it.Next(); {
			n := it.Node()
			parts = append(parts, string(n.Data))
			if line == 0 {
				line = lineOf(int(n.Raw.Offset))
			}
		}
		key := strings.Join(parts, ".")
		switch e.Kind {
		case unstable.Table:
			prefix = key + "."
			lines[key] = line
		case unstable.ArrayTable:
			i := counts[key]
			counts[key]++
			k := fmt.Sprintf("%s[%d]", key, i)
			lines[k] = line
			prefix = k + "."
		case unstable.KeyValue:
			lines[prefix+key] = line
		}
	}
	return lines
}

// EnvName is the environment variable that sets key.
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

func (ld *loader) env(environ []string) {
	byName := map[string]string{}
	var names []string
	for _, k := range leafKeys {
		byName[EnvName(k)] = k
		names = append(names, EnvName(k))
	}
	for _, kv := range environ {
		name, value, _ := strings.Cut(kv, "=")
		if name == EnvAdminToken {
			ld.l.envToken = value
		}
		if !strings.HasPrefix(name, EnvPrefix) || slices.Contains(reservedEnv, name) {
			continue
		}
		key, ok := byName[name]
		if !ok {
			hint := ""
			if best, ok := nearest(name, names); ok {
				hint = fmt.Sprintf(" (did you mean %s?)", best)
			}
			ld.fail("env %s: not a warmpool setting%s", name, hint)
			continue
		}
		ld.setText(key, value, Source{Kind: FromEnv, Where: name})
	}
}

func (ld *loader) sets(sets []string) {
	for _, s := range sets {
		key, value, ok := strings.Cut(s, "=")
		key = strings.TrimSpace(key)
		if !ok {
			ld.fail("flag --set %s: want key=value", s)
			continue
		}
		if strings.HasPrefix(key, "warmup.request") {
			ld.fail("flag --set %s: warm-up requests can only be declared in the config file ([[warmup.request]])", key)
			continue
		}
		if _, ok := lookup(key); !ok {
			hint := ""
			if best, ok := nearest(key, leafKeys); ok {
				hint = fmt.Sprintf(" (did you mean %s?)", best)
			}
			ld.fail("flag --set %s: unknown key%s", key, hint)
			continue
		}
		ld.setText(key, value, Source{Kind: FromFlag, Where: "--set " + key})
	}
}

// setText assigns a value given as text (environment, flag) to key.
func (ld *loader) setText(key, text string, src Source) {
	fd, _ := lookup(key)
	raw, err := parseText(fd.kind, text)
	if err == nil {
		err = assign(reflect.ValueOf(&ld.l.Config).Elem().FieldByIndex(fd.index), fd.kind, raw)
	}
	if err != nil {
		ld.fail("%s: %s: %v", src, key, err)
		ld.failed = append(ld.failed, key)
		return
	}
	ld.l.sources[key] = src
}

// parseText reads text as the TOML value a kind needs: strings as they are, the rest as TOML.
func parseText(k kind, text string) (any, error) {
	switch k {
	case kindString, kindDuration:
		return text, nil
	case kindSize:
		if n, err := strconv.ParseInt(text, 10, 64); err == nil {
			return n, nil
		}
		return text, nil
	case kindInt:
		n, err := strconv.ParseInt(strings.TrimSpace(text), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("want %s, got %q", form[k], text)
		}
		return n, nil
	case kindFloat:
		f, err := strconv.ParseFloat(strings.TrimSpace(text), 64)
		if err != nil {
			return nil, fmt.Errorf("want %s, got %q", form[k], text)
		}
		return f, nil
	case kindBool:
		b, err := strconv.ParseBool(strings.TrimSpace(text))
		if err != nil {
			return nil, fmt.Errorf("want %s, got %q", form[k], text)
		}
		return b, nil
	}
	var doc map[string]any
	if err := toml.Unmarshal([]byte("v = "+text), &doc); err != nil {
		return nil, fmt.Errorf("want %s, got %q", form[k], text)
	}
	return doc["v"], nil
}

// applyRequestDefaults fills what a warm-up request left out; an explicit value stays, even a
// wrong one, so that validation can name it.
func (l *Loaded) applyRequestDefaults() {
	for i := range l.Config.Warmup.Requests {
		r := &l.Config.Warmup.Requests[i]
		key := fmt.Sprintf("warmup.request[%d].", i)
		if r.Method == "" && !l.Explicit(key+"method") {
			r.Method = http.MethodGet
		}
		r.Method = strings.ToUpper(r.Method)
		if r.Repeat == 0 && !l.Explicit(key+"repeat") {
			r.Repeat = 1
		}
	}
}
