package acme

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"reflect"
	"time"
)

// Problem details are read by people fixing a client or a web server: they say what
// was wrong in the protocol's terms, never in the Go types or ASN.1 internals the
// server used to find out.

// jsonDetail says what is wrong with a JSON document that did not decode into the
// expected shape.
func jsonDetail(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("it is not valid JSON (at byte %d)", syn.Offset)
	case errors.As(err, &typ) && typ.Field != "":
		return fmt.Sprintf("field %q must be %s, not a JSON %s", typ.Field, jsonKind(typ.Type), typ.Value)
	case errors.As(err, &typ):
		return fmt.Sprintf("it must be %s, not a JSON %s", jsonKind(typ.Type), typ.Value)
	}
	return "it does not have the expected fields"
}

// jsonKind names a Go type by the JSON value it decodes from.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "another value"
	}
	if t == reflect.TypeFor[time.Time]() {
		return "an RFC 3339 time string"
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return "a base64 string"
		}
		return "a list"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return "another value"
}

// netDetail says why a validation's network step failed, and whether it was DNS: a
// name that did not resolve, a timeout (with the limit), or the connection error.
func netDetail(ctx context.Context, err error, limit time.Duration) (detail string, isDNS bool) {
	var dns *net.DNSError
	var ne net.Error
	switch {
	case errors.As(err, &dns):
		if dns.IsTimeout {
			return fmt.Sprintf("DNS lookup of %s timed out", dns.Name), true
		}
		if dns.IsNotFound {
			return fmt.Sprintf("DNS lookup of %s: no such name (NXDOMAIN or no address records)", dns.Name), true
		}
		return fmt.Sprintf("DNS lookup of %s failed: %s", dns.Name, dns.Err), true
	case errors.Is(err, context.DeadlineExceeded), ctx.Err() != nil, errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("no answer within %s", limit), false
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err.Error(), false
	}
	return err.Error(), false
}
