package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/smx-mta/smx/smtp/maps"
)

// CheckAccessMap checks the right-hand sides of an access map's entries
// whose tags this package reads (from:, to:, cltaddr:, cltname:,
// cltresolve:, mxbadip:, certissuer:, certsubject:, protectedrcpt: and the
// tags of dnsbls), for use as maps.Spec.Validate so that a broken access map
// is refused at load and reload. Entries with other tags (seed 002 has
// smtps_session_conf: and more) are left alone.
func CheckAccessMap(dnsblTags []string) func(map[string]string) error {
	return func(entries map[string]string) error {
		var errs []error
		for key, value := range entries {
			tag, _, ok := strings.Cut(key, ":")
			if !ok {
				continue
			}
			tag += ":"
			var err error
			switch {
			case tag == TagProtectedRcpt:
				err = checkRestrictions(value)
			case slices.Contains([]string{TagFrom, TagTo, TagClientAddr, TagClientName, TagClientResolve,
				TagMXBadIP, TagCertIssuer, TagCertSubject}, tag), slices.Contains(dnsblTags, tag[:len(tag)-1]):
				_, err = ParseRHS(value)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("entry %q: %w", key, err))
			}
		}
		return errors.Join(errs...)
	}
}

// checkRestrictions checks a protectedrcpt: right-hand side: from:ADDR,
// cltaddr:IP-OR-NET and list:ALIAS restrictions separated by blanks.
func checkRestrictions(value string) error {
	fields := strings.Fields(value)
	if len(fields) == 0 {
		return errors.New("protectedrcpt: no restrictions")
	}
	for _, r := range fields {
		kind, arg, ok := strings.Cut(r, ":")
		arg = strings.TrimSuffix(strings.TrimPrefix(arg, "<"), ">")
		if !ok || arg == "" {
			return fmt.Errorf("protectedrcpt: bad restriction %q", r)
		}
		switch strings.ToLower(kind) {
		case "from", "list":
			if _, err := maps.ParseAddress(arg); err != nil {
				return fmt.Errorf("protectedrcpt: %q: %w", r, err)
			}
		case "cltaddr":
			if _, err := netip.ParseAddr(arg); err != nil && !isNet(arg) {
				return fmt.Errorf("protectedrcpt: %q is not an IP address or net", r)
			}
		default:
			return fmt.Errorf("protectedrcpt: unknown restriction %q", r)
		}
	}
	return nil
}

// isNet accepts the seed's short IPv4 nets: "10", "10.1", "10.1.2".
func isNet(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) > 3 {
		return false
	}
	for _, p := range parts {
		if p == "" || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return false
		}
	}
	return true
}
