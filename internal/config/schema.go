package config

import (
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// kind is the TOML shape of a setting.
type kind int

const (
	kindString kind = iota
	kindInt
	kindFloat
	kindBool
	kindDuration
	kindSize
	kindStrings
	kindInts
	kindStringMap
)

// form describes a kind for error messages.
var form = map[kind]string{
	kindString:    "a string",
	kindInt:       "an integer",
	kindFloat:     "a number",
	kindBool:      "true or false",
	kindDuration:  `a duration string such as "500ms", "30s" or "5m"`,
	kindSize:      `a size such as "512MiB", "2GiB" or a number of bytes`,
	kindStrings:   `an array of strings such as ["app", "{socket}"]`,
	kindInts:      "an array of integers such as [200, 204]",
	kindStringMap: `a table of strings such as { NAME = "value" }`,
}

// field is one leaf setting: its dotted key and where it lives in the struct.
type field struct {
	key     string
	kind    kind
	index   []int
	restart bool // tagged reload:"restart": bound at start
}

// table is a section of the schema: its leaves, sub-tables and arrays of tables.
type table struct {
	fields map[string]field // by TOML name
	tables map[string]*table
	arrays map[string]*table // arrays of tables, e.g. warmup.request
	index  map[string][]int  // struct index of sub-tables and arrays
}

var (
	rootSchema   = buildTable(reflect.TypeFor[Config](), "", nil)
	requestTable = rootSchema.tables["warmup"].arrays["request"]
	// leafKeys lists every leaf key of the schema outside arrays, in declaration order.
	leafKeys = collectKeys(reflect.TypeFor[Config](), "")
	// boundAtStart lists the leaves tagged reload:"restart": listeners, files and the like,
	// which a reload cannot change in a running process.
	boundAtStart = collectBoundAtStart()
)

func collectBoundAtStart() []string {
	var keys []string
	for _, key := range leafKeys {
		if fd, ok := lookup(key); ok && fd.restart {
			keys = append(keys, key)
		}
	}
	return keys
}

// BoundAtStart reports whether key is a setting a reload cannot change.
func BoundAtStart(key string) bool { return slices.Contains(boundAtStart, key) }

// RestartNeeded lists, for a reload from running to l, every setting bound at start whose
// value would change, naming the setting, both values and the new one's source.
func (l *Loaded) RestartNeeded(running *Config) []error {
	var errs []error
	for _, key := range boundAtStart {
		fd, _ := lookup(key)
		before := render(reflect.ValueOf(running).Elem().FieldByIndex(fd.index), fd.kind)
		if after := l.value(key); before != after {
			errs = append(errs, fmt.Errorf("%s changed from %s to %s (%s), but it is bound at start: restart warmpool to change it",
				key, before, after, l.Source(key)))
		}
	}
	return errs
}

var (
	durationType = reflect.TypeFor[Duration]()
	sizeType     = reflect.TypeFor[Size]()
)

func buildTable(t reflect.Type, prefix string, base []int) *table {
	tb := &table{fields: map[string]field{}, tables: map[string]*table{}, arrays: map[string]*table{}, index: map[string][]int{}}
	for i := range t.NumField() {
		f := t.Field(i)
		name := f.Tag.Get("toml")
		if name == "" || name == "-" {
			continue
		}
		idx := append(slices.Clone(base), i)
		key := prefix + name
		restart := f.Tag.Get("reload") == "restart"
		switch {
		case f.Type == durationType:
			tb.fields[name] = field{key, kindDuration, idx, restart}
		case f.Type == sizeType:
			tb.fields[name] = field{key, kindSize, idx, restart}
		case f.Type.Kind() == reflect.Struct:
			tb.tables[name] = buildTable(f.Type, key+".", idx)
			tb.index[name] = idx
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			tb.arrays[name] = buildTable(f.Type.Elem(), "", nil)
			tb.index[name] = idx
		default:
			tb.fields[name] = field{key, kindOf(f.Type), idx, restart}
		}
	}
	return tb
}

func kindOf(t reflect.Type) kind {
	switch t.Kind() {
	case reflect.String:
		return kindString
	case reflect.Int:
		return kindInt
	case reflect.Float64:
		return kindFloat
	case reflect.Bool:
		return kindBool
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Int {
			return kindInts
		}
		return kindStrings
	case reflect.Map:
		return kindStringMap
	}
	panic("config: unsupported field type " + t.String())
}

func collectKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		name := f.Tag.Get("toml")
		switch {
		case name == "" || name == "-":
		case f.Type == durationType || f.Type == sizeType:
			keys = append(keys, prefix+name)
		case f.Type.Kind() == reflect.Struct:
			keys = append(keys, collectKeys(f.Type, prefix+name+".")...)
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
		default:
			keys = append(keys, prefix+name)
		}
	}
	return keys
}

// lookup finds the leaf for a dotted key outside arrays.
func lookup(key string) (field, bool) {
	tb := rootSchema
	parts := strings.Split(key, ".")
	for _, p := range parts[:len(parts)-1] {
		next, ok := tb.tables[p]
		if !ok {
			return field{}, false
		}
		tb = next
	}
	f, ok := tb.fields[parts[len(parts)-1]]
	return f, ok
}

// assign stores a decoded TOML value (string, int64, bool, []any, map[string]any) in v.
func assign(v reflect.Value, k kind, raw any) error {
	bad := func() error { return fmt.Errorf("want %s, got %s", form[k], describeValue(raw)) }
	switch k {
	case kindString:
		s, ok := raw.(string)
		if !ok {
			return bad()
		}
		v.SetString(s)
	case kindInt:
		n, ok := raw.(int64)
		if !ok {
			return bad()
		}
		v.SetInt(n)
	case kindFloat:
		switch x := raw.(type) {
		case float64:
			v.SetFloat(x)
		case int64:
			v.SetFloat(float64(x))
		default:
			return bad()
		}
	case kindBool:
		b, ok := raw.(bool)
		if !ok {
			return bad()
		}
		v.SetBool(b)
	case kindDuration:
		s, ok := raw.(string)
		if !ok {
			return bad()
		}
		return v.Addr().Interface().(*Duration).UnmarshalText([]byte(s))
	case kindSize:
		switch x := raw.(type) {
		case string:
			return v.Addr().Interface().(*Size).UnmarshalText([]byte(x))
		case int64:
			if x < 0 {
				return bad()
			}
			v.Set(reflect.ValueOf(Size{x}))
		default:
			return bad()
		}
	case kindStrings, kindInts:
		list, ok := raw.([]any)
		if !ok {
			return bad()
		}
		out := reflect.MakeSlice(v.Type(), len(list), len(list))
		for i, e := range list {
			if k == kindStrings {
				s, ok := e.(string)
				if !ok {
					return bad()
				}
				out.Index(i).SetString(s)
			} else {
				n, ok := e.(int64)
				if !ok {
					return bad()
				}
				out.Index(i).SetInt(n)
			}
		}
		v.Set(out)
	case kindStringMap:
		m, ok := raw.(map[string]any)
		if !ok {
			return bad()
		}
		out := reflect.MakeMapWithSize(v.Type(), len(m))
		for name, e := range m {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("want %s, but %s is %s", form[k], name, describeValue(e))
			}
			out.SetMapIndex(reflect.ValueOf(name), reflect.ValueOf(s))
		}
		v.Set(out)
	}
	return nil
}

func describeValue(raw any) string {
	switch x := raw.(type) {
	case string:
		return "the string " + strconv.Quote(x)
	case int64:
		return "the integer " + strconv.FormatInt(x, 10)
	case float64:
		return "the number " + strconv.FormatFloat(x, 'g', -1, 64)
	case bool:
		return "the boolean " + strconv.FormatBool(x)
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	default:
		return fmt.Sprintf("a %T", raw)
	}
}

// render writes a value in TOML syntax.
func render(v reflect.Value, k kind) string {
	switch k {
	case kindString:
		return strconv.Quote(v.String())
	case kindInt:
		return strconv.FormatInt(v.Int(), 10)
	case kindFloat:
		f := strconv.FormatFloat(v.Float(), 'f', -1, 64)
		if !strings.ContainsAny(f, ".eE") {
			f += ".0"
		}
		return f
	case kindBool:
		return strconv.FormatBool(v.Bool())
	case kindDuration:
		return strconv.Quote(v.Interface().(Duration).Duration.String())
	case kindSize:
		return strconv.Quote(v.Interface().(Size).String())
	case kindStrings, kindInts:
		parts := make([]string, v.Len())
		for i := range parts {
			if k == kindStrings {
				parts[i] = strconv.Quote(v.Index(i).String())
			} else {
				parts[i] = strconv.FormatInt(v.Index(i).Int(), 10)
			}
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case kindStringMap:
		return renderStringMap(v, func(_, value string) string { return strconv.Quote(value) })
	}
	return "?"
}

// renderStringMap renders a string map as an inline TOML table, in key order, each value as
// show says.
func renderStringMap(v reflect.Value, show func(key, value string) string) string {
	keys := make([]string, 0, v.Len())
	for _, mk := range v.MapKeys() {
		keys = append(keys, mk.String())
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, mk := range keys {
		parts[i] = bareOrQuoted(mk) + " = " + show(mk, v.MapIndex(reflect.ValueOf(mk)).String())
	}
	if len(parts) == 0 {
		return "{}"
	}
	return "{ " + strings.Join(parts, ", ") + " }"
}

func bareOrQuoted(k string) string {
	for _, r := range k {
		if !(r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return strconv.Quote(k)
		}
	}
	return k
}
