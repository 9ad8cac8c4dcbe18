package client

import (
	"strconv"
	"strings"
)

// Extensions are the service extensions a server announced in its reply to
// EHLO or LHLO, keyed by the upper-case keyword, with the parameters as
// sent.
type Extensions map[string]string

// parseExtensions reads the lines of an EHLO reply after the first, which
// carries the server's name.
func parseExtensions(rep Reply) Extensions {
	ext := make(Extensions, len(rep.Lines))
	for _, line := range rep.Lines[min(1, len(rep.Lines)):] {
		keyword, params, _ := strings.Cut(strings.TrimSpace(line), " ")
		if keyword == "" {
			continue
		}
		ext[strings.ToUpper(keyword)] = strings.TrimSpace(params)
	}
	return ext
}

// Has reports whether the server announced keyword.
func (e Extensions) Has(keyword string) bool {
	_, ok := e[keyword]
	return ok
}

// Size returns the SIZE limit the server announced: ok is false when it
// announced no SIZE, and limit is 0 when it announced no fixed maximum.
func (e Extensions) Size() (limit int64, ok bool) {
	params, ok := e["SIZE"]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(params, 10, 64)
	if err != nil || n < 0 {
		return 0, true
	}
	return n, true
}

// serverName returns the domain a greeting or EHLO reply begins with.
func serverName(rep Reply) string {
	if len(rep.Lines) == 0 {
		return ""
	}
	name, _, _ := strings.Cut(strings.TrimSpace(rep.Lines[0]), " ")
	return strings.TrimSuffix(name, ".")
}
