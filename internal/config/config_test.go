package config

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	c, err := Parse([]byte(`{"name":"Lab","dns_names":["ca.lab.internal"],"policy":{"default_validity":"720h"},"acme":{"http_port":5002}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "Lab" || c.Policy.DefaultValidity.D() != 720*time.Hour || c.ACME.HTTPPort != 5002 || c.ACME.TLSPort != 443 || c.Listen != "127.0.0.1:8443" {
		t.Fatalf("parsed %+v", c)
	}
	for _, tc := range []struct{ in, want string }{
		{`{"nmae":"x"}`, `unknown key "nmae"`},
		{`{"policy":{"max_valdity":"1h"}}`, `unknown key "policy.max_valdity"`},
		{`{"policy":{"max_validity":"forever"}}`, `bad duration "forever"`},
		{`{"acme":{"http_port":"80"}}`, `key "acme.http_port": expected a whole number (int), got the string "80"`},
		{`{"name":`, `unexpected EOF`},
		{`{} {}`, `trailing data`},
		{`{"database":{"driver":"mysql"}}`, `database.driver "mysql"`},
		{`{"policy":{"default_validity":"10h","max_validity":"1h"}}`, `exceeds policy.max_validity`},
	} {
		_, err := Parse([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%s) = %v, want error containing %q", tc.in, err, tc.want)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	c := Defaults()
	c.PermittedIP = []string{"100.64.0.0/10"}
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	c2, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := c2.Marshal()
	if string(b) != string(b2) {
		t.Fatalf("round trip changed the config:\n%s\n%s", b, b2)
	}
}

func FuzzParse(f *testing.F) {
	d := Defaults()
	b, _ := d.Marshal()
	f.Add(b)
	f.Add([]byte(`{"nmae":"x"}`))
	f.Add([]byte(`{"policy":{"max_validity":"-1h"}}`))
	f.Add([]byte(`{"acme":{"provisioners":[{"name":"a/b"}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			return
		}
		// An accepted config survives a marshal/parse round trip unchanged.
		b, err := c.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		c2, err := Parse(b)
		if err != nil {
			t.Fatalf("re-parse of accepted config failed: %v\n%s", err, b)
		}
		b2, _ := c2.Marshal()
		if string(b) != string(b2) {
			t.Fatalf("unstable round trip:\n%s\n%s", b, b2)
		}
	})
}
