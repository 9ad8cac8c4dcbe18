package server

import (
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// FuzzCredentialMap feeds the credential map parser arbitrary files: it
// never panics, an error names the file, line and column, and what it
// accepts is users with bcrypt hashes.
func FuzzCredentialMap(f *testing.F) {
	const hash = "$2a$04$vI8aWBnW3fID.ZQ4/zo1G.q1lRps.9cGLcZEiGDMVr5yUP1KUOYTa"
	for _, s := range []string{
		"alice " + hash + "\n", "# c\n\n  bob\t" + hash + "\r\n", "alice plaintext\n", "alice " + hash + "\nalice " + hash + "\n",
		"a b c\n", "\x00 " + hash, strings.Repeat("x", 70000),
	} {
		f.Add(s)
	}
	pos := regexp.MustCompile(`^auth:\d+:\d+: `)
	f.Fuzz(func(t *testing.T, in string) {
		users, err := parseCredentials(strings.NewReader(in), "auth")
		if err != nil {
			if !pos.MatchString(err.Error()) && !strings.HasPrefix(err.Error(), "smtp server: credentials auth: ") {
				t.Fatalf("error without file:line:column: %v", err)
			}
			return
		}
		for user, h := range users {
			if user == "" || strings.ContainsAny(user, " \t\r\n") {
				t.Fatalf("user %q", user)
			}
			if _, err := bcrypt.Cost(h); err != nil {
				t.Fatalf("user %q has hash %q: %v", user, h, err)
			}
		}
	})
}
