package acme

import (
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// testDNS is a tiny UDP DNS server on loopback for tests: every A question is answered
// with 127.0.0.1, TXT questions from records set with setTXT or from files named after
// the (dot-terminated) name in dir, names under nxdomain.test with NXDOMAIN, and
// anything else with an empty NOERROR answer.
type testDNS struct {
	conn *net.UDPConn
	dir  string
	mu   sync.Mutex
	txt  map[string][]string
}

func newTestDNS(t *testing.T) *testDNS {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	d := &testDNS{conn: c, dir: t.TempDir(), txt: map[string][]string{}}
	t.Cleanup(func() { c.Close() })
	go d.serve()
	return d
}

func (d *testDNS) addr() string { return d.conn.LocalAddr().String() }

func (d *testDNS) setTXT(name string, vals ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.txt[strings.ToLower(strings.TrimSuffix(name, "."))+"."] = vals
}

func (d *testDNS) lookupTXT(name string) []string {
	d.mu.Lock()
	v := d.txt[name]
	d.mu.Unlock()
	if v != nil {
		return v
	}
	if b, err := os.ReadFile(filepath.Join(d.dir, name)); err == nil {
		return strings.Fields(string(b))
	}
	return nil
}

func (d *testDNS) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := d.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if resp := d.answer(buf[:n]); resp != nil {
			d.conn.WriteToUDP(resp, from)
		}
	}
}

// answer builds the response to one query (header, one question).
func (d *testDNS) answer(q []byte) []byte {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:]) != 1 {
		return nil
	}
	var labels []string
	i := 12
	for i < len(q) && q[i] != 0 {
		l := int(q[i])
		if i+1+l > len(q) {
			return nil
		}
		labels = append(labels, string(q[i+1:i+1+l]))
		i += 1 + l
	}
	if i+5 > len(q) {
		return nil
	}
	qend := i + 5
	qtype := binary.BigEndian.Uint16(q[i+1:])
	name := strings.ToLower(strings.Join(labels, ".")) + "."
	var rdatas [][]byte
	rcode := byte(0)
	switch {
	case strings.HasSuffix(name, ".nxdomain.test."):
		rcode = 3 // NXDOMAIN
	case qtype == 1: // A
		rdatas = [][]byte{{127, 0, 0, 1}}
	case qtype == 16: // TXT
		for _, v := range d.lookupTXT(name) {
			rdatas = append(rdatas, append([]byte{byte(len(v))}, v...))
		}
	}
	resp := make([]byte, 0, 512)
	resp = append(resp, q[0], q[1], 0x84|q[2]&0x01, 0x80|rcode) // QR, AA, RD copied; RA
	resp = binary.BigEndian.AppendUint16(resp, 1)
	resp = binary.BigEndian.AppendUint16(resp, uint16(len(rdatas)))
	resp = append(resp, 0, 0, 0, 0)
	resp = append(resp, q[12:qend]...)
	for _, rd := range rdatas {
		resp = append(resp, 0xc0, 12)
		resp = binary.BigEndian.AppendUint16(resp, qtype)
		resp = binary.BigEndian.AppendUint16(resp, 1)
		resp = binary.BigEndian.AppendUint32(resp, 0)
		resp = binary.BigEndian.AppendUint16(resp, uint16(len(rd)))
		resp = append(resp, rd...)
	}
	return resp
}
