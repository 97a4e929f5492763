package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// maxSettingsBytes bounds a settings file: the checker walks the whole document, so
// its work is bounded before anything else looks at it.
const maxSettingsBytes = 4 << 20

// Problems checks a JSON document against the shape of v (a pointer to a struct with
// json tags) and returns one error per problem, each naming the key by its dotted
// path: unknown keys, secrets written inline, values of the wrong JSON type and values
// a field's own decoder refuses. It reads only the types, so any key a struct gains
// is checked without more code.
func Problems(data []byte, v any) []error {
	if len(data) > maxSettingsBytes {
		return []error{fmt.Errorf("the settings are %d bytes; at most %d are read", len(data), maxSettingsBytes)}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return []error{fmt.Errorf("not valid JSON at byte %d: %w", se.Offset, err)}
		}
		return []error{fmt.Errorf("not valid JSON: %w", err)}
	}
	if _, err := dec.Token(); err != io.EOF {
		return []error{errors.New("trailing data after the JSON object")}
	}
	if _, ok := doc.(map[string]any); !ok {
		return []error{errors.New("the settings must be a JSON object")}
	}
	var out []error
	check("", doc, reflect.TypeOf(v).Elem(), &out)
	return out
}

// DecodeStrict decodes data onto v (already holding defaults) after Problems found
// nothing; the problems, when there are some, come back joined, one per line.
func DecodeStrict(data []byte, v any) error {
	if ps := Problems(data, v); len(ps) > 0 {
		return errors.Join(ps...)
	}
	return json.Unmarshal(data, v)
}

var (
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
)

func check(path string, val any, t reflect.Type, out *[]error) {
	if val == nil { // null leaves the default in place, as encoding/json does
		return
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		raw, _ := json.Marshal(val)
		if err := json.Unmarshal(raw, reflect.New(t).Interface()); err != nil {
			*out = append(*out, fmt.Errorf("key %q: %w", path, err))
		}
		return
	}
	bad := func(want string) {
		*out = append(*out, fmt.Errorf("key %q: expected %s, got %s", path, want, describe(val)))
	}
	switch t.Kind() {
	case reflect.Pointer:
		check(path, val, t.Elem(), out)
	case reflect.Struct:
		obj, ok := val.(map[string]any)
		if !ok {
			bad("an object")
			return
		}
		fields := jsonFields(t)
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := join(path, k)
			ft, ok := fields[k]
			if !ok {
				*out = append(*out, unknownKey(p))
				continue
			}
			check(p, obj[k], ft, out)
		}
	case reflect.Map:
		obj, ok := val.(map[string]any)
		if !ok {
			bad("an object")
			return
		}
		for k, e := range obj {
			check(join(path, k), e, t.Elem(), out)
		}
	case reflect.Slice, reflect.Array:
		arr, ok := val.([]any)
		if !ok {
			bad("a list")
			return
		}
		for i, e := range arr {
			check(path+"["+strconv.Itoa(i)+"]", e, t.Elem(), out)
		}
	case reflect.String:
		if _, ok := val.(string); !ok {
			bad("a string")
		}
	case reflect.Bool:
		if _, ok := val.(bool); !ok {
			bad("true or false")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := val.(json.Number)
		i, err := n.Int64()
		if !ok || err != nil || i < -1<<(t.Bits()-1) || i > 1<<(t.Bits()-1)-1 {
			bad(fmt.Sprintf("a whole number (%s)", t.Kind()))
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := val.(json.Number)
		u, err := strconv.ParseUint(n.String(), 10, 64)
		if !ok || err != nil || (t.Bits() < 64 && u > 1<<t.Bits()-1) {
			bad(fmt.Sprintf("a whole number ≥ 0 (%s)", t.Kind()))
		}
	case reflect.Float32, reflect.Float64:
		n, ok := val.(json.Number)
		f, err := n.Float64()
		if !ok || err != nil || math.IsInf(f, 0) {
			bad("a number")
		}
	}
}

// jsonFields maps the JSON names of t's exported fields (embedded structs flattened)
// to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range jsonFields(ft) {
					if _, ok := m[k]; !ok {
						m[k] = v
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = f.Type
	}
	return m
}

// secretWords mark a key that would put a secret into the settings, which NixOS keeps
// world-readable in /nix/store.
var secretWords = []string{"password", "passphrase", "secret", "token", "private_key", "credential"}

func unknownKey(path string) error {
	last := strings.ToLower(path[strings.LastIndexByte(path, '.')+1:])
	for _, w := range secretWords {
		if strings.Contains(last, w) {
			return fmt.Errorf("key %q: secrets are never read from the settings (NixOS keeps them world-readable in /nix/store): put the secret in a file and give its path in password_file", path)
		}
	}
	return fmt.Errorf("unknown key %q: remove it or check its spelling (see docs/config.md)", path)
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func describe(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", v)
	case json.Number:
		return "the number " + v.String()
	case bool:
		return fmt.Sprintf("%t", v)
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%v", v)
}
