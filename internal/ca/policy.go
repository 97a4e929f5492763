package ca

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// SANs are the subject alternative names of a request, validated and split by type.
type SANs struct {
	DNS []string
	IPs []net.IP
}

// ParseSANs validates a list of names as users give them (DNS names and IP addresses,
// IPv6 with or without brackets). Wildcards are refused unless allowWildcards.
func ParseSANs(names []string, allowWildcards bool) (SANs, error) {
	var s SANs
	seen := map[string]bool{}
	for _, raw := range names {
		n := strings.TrimSpace(raw)
		if n == "" {
			continue
		}
		if ip, err := netip.ParseAddr(strings.Trim(n, "[]")); err == nil {
			if ip.Zone() != "" {
				return s, fmt.Errorf("SAN %q: IP addresses with a zone cannot be certified", raw)
			}
			ip = ip.Unmap()
			if !seen[ip.String()] {
				seen[ip.String()] = true
				s.IPs = append(s.IPs, net.IP(ip.AsSlice()))
			}
			continue
		}
		d, err := normalizeDNSName(n, allowWildcards)
		if err != nil {
			return s, fmt.Errorf("SAN %q: %w", raw, err)
		}
		if !seen[d] {
			seen[d] = true
			s.DNS = append(s.DNS, d)
		}
	}
	if len(s.DNS)+len(s.IPs) == 0 {
		return s, fmt.Errorf("no subject alternative names: give at least one DNS name or IP address")
	}
	return s, nil
}

// normalizeDNSName lowercases a DNS name, drops one trailing dot and checks its
// syntax (LDH labels of 1–63 characters, 253 in all; a leading "*." if allowed).
func normalizeDNSName(n string, allowWildcard bool) (string, error) {
	d := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(n)), ".")
	if d == "" {
		return "", fmt.Errorf("empty DNS name")
	}
	if len(d) > 253 {
		return "", fmt.Errorf("DNS name is %d characters long, the limit is 253", len(d))
	}
	labels := strings.Split(d, ".")
	for i, l := range labels {
		if l == "*" && i == 0 {
			if !allowWildcard {
				return "", fmt.Errorf("wildcard names are not allowed by policy (policy.allow_wildcards)")
			}
			if len(labels) < 3 {
				return "", fmt.Errorf("a wildcard needs at least two labels after it")
			}
			continue
		}
		if l == "" || len(l) > 63 {
			return "", fmt.Errorf("label %q must be 1 to 63 characters", l)
		}
		for j := 0; j < len(l); j++ {
			c := l[j]
			ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' && j == 0
			if !ok {
				return "", fmt.Errorf("label %q: character %q is not allowed in a DNS name (letters, digits and '-')", l, c)
			}
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return "", fmt.Errorf("label %q must not start or end with '-'", l)
		}
	}
	if last := labels[len(labels)-1]; strings.Trim(last, "0123456789") == "" {
		return "", fmt.Errorf("%q is neither a valid IP address nor a DNS name (a top-level label cannot be all digits)", n)
	}
	return d, nil
}

// CheckNameConstraints reports the first name outside the issuer's permitted
// subtrees (RFC 5280 4.2.1.10), naming it and the constraint.
func CheckNameConstraints(iss *Issuer, s SANs) error {
	c := iss.Cert
	if len(c.PermittedDNSDomains) > 0 || len(c.PermittedIPRanges) > 0 {
		for _, d := range s.DNS {
			if !dnsPermitted(d, c.PermittedDNSDomains) {
				return fmt.Errorf("%s is outside the CA's name constraints (permitted DNS: %s)", d, listOrNone(c.PermittedDNSDomains))
			}
		}
		for _, ip := range s.IPs {
			if !ipPermitted(ip, c.PermittedIPRanges) {
				var rs []string
				for _, r := range c.PermittedIPRanges {
					rs = append(rs, r.String())
				}
				return fmt.Errorf("%s is outside the CA's name constraints (permitted IP ranges: %s)", ip, listOrNone(rs))
			}
		}
	}
	for _, d := range s.DNS {
		for _, ex := range c.ExcludedDNSDomains {
			if dnsMatches(d, ex) {
				return fmt.Errorf("%s is excluded by the CA's name constraints (%s)", d, ex)
			}
		}
	}
	return nil
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}

func dnsPermitted(name string, permitted []string) bool {
	for _, p := range permitted {
		if dnsMatches(name, p) {
			return true
		}
	}
	return false
}

// dnsMatches applies RFC 5280's DNS constraint rule: "example.com" matches itself and
// every subdomain; ".example.com" matches subdomains only.
func dnsMatches(name, constraint string) bool {
	name, constraint = strings.ToLower(name), strings.ToLower(constraint)
	name = strings.TrimPrefix(name, "*.")
	if strings.HasPrefix(constraint, ".") {
		return strings.HasSuffix(name, constraint)
	}
	return name == constraint || strings.HasSuffix(name, "."+constraint)
}

func ipPermitted(ip net.IP, ranges []*net.IPNet) bool {
	for _, r := range ranges {
		if r.Contains(ip) {
			return true
		}
	}
	return false
}
