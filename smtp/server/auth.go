package server

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/emersion/go-sasl"
	"golang.org/x/crypto/bcrypt"

	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/smtp"
)

// CredentialMap is an Authenticator backed by a map file of user names and
// bcrypt password hashes, one entry a line:
//
//	# comment
//	alice   $2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy
//
// Passwords are never stored in the clear; `htpasswd -nbB` or any bcrypt
// tool makes the hashes. A wrong password costs the same time as an
// unknown user.
type CredentialMap struct {
	mu    sync.RWMutex
	users map[string][]byte
	// dummy is compared against for unknown users, so that their answer
	// takes as long as a wrong password: it has the highest cost of the
	// users' hashes.
	dummy []byte
}

// LoadCredentialMap reads a credential map file. Errors name the file,
// line and column.
func LoadCredentialMap(path string) (*CredentialMap, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("smtp server: credentials: %w", err)
	}
	defer f.Close()
	users, err := parseCredentials(f, path)
	if err != nil {
		return nil, err
	}
	dummy, err := dummyHash(users)
	if err != nil {
		return nil, fmt.Errorf("smtp server: credentials %s: %w", path, err)
	}
	return &CredentialMap{users: users, dummy: dummy}, nil
}

// dummyHash hashes a password nobody has at the highest cost among the
// users' hashes.
func dummyHash(users map[string][]byte) ([]byte, error) {
	cost := bcrypt.MinCost
	for _, h := range users {
		if c, err := bcrypt.Cost(h); err == nil && c > cost {
			cost = c
		}
	}
	return bcrypt.GenerateFromPassword([]byte("smx: no such user"), cost)
}

// parseCredentials reads the lines of a credential map named path.
func parseCredentials(r io.Reader, path string) (map[string][]byte, error) {
	users := make(map[string][]byte)
	sc := bufio.NewScanner(r)
	for lineNo := 1; sc.Scan(); lineNo++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		fields := strings.Fields(trimmed)
		col := strings.Index(line, trimmed) + 1
		if len(fields) != 2 {
			return nil, fmt.Errorf("%s:%d:%d: want \"user bcrypt-hash\"", path, lineNo, col)
		}
		hash := []byte(fields[1])
		if _, err := bcrypt.Cost(hash); err != nil {
			return nil, fmt.Errorf("%s:%d:%d: password of %q is not a bcrypt hash: %v", path, lineNo,
				strings.Index(line, fields[1])+1, fields[0], err)
		}
		if _, dup := users[fields[0]]; dup {
			return nil, fmt.Errorf("%s:%d:%d: user %q listed twice", path, lineNo, col, fields[0])
		}
		users[fields[0]] = hash
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("smtp server: credentials %s: %w", path, err)
	}
	return users, nil
}

// Authenticate implements Authenticator.
func (m *CredentialMap) Authenticate(user, password string) bool {
	m.mu.RLock()
	hash, ok := m.users[user]
	dummy := m.dummy
	m.mu.RUnlock()
	if !ok {
		bcrypt.CompareHashAndPassword(dummy, []byte(password))
		return false
	}
	return bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil
}

// Reload replaces the entries with those of the file at path; on error the
// old entries stay.
func (m *CredentialMap) Reload(path string) error {
	n, err := LoadCredentialMap(path)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.users, m.dummy = n.users, n.dummy
	m.mu.Unlock()
	return nil
}

var errAuthFailed = errors.New("authentication failed")

func (s *session) cmdAuth(arg string) error {
	switch {
	case s.opts.Auth == nil:
		return s.bad(smtp.NewReply(502, smtp.E(5, 5, 1), "AUTH not available"))
	case !s.authOffered():
		return s.bad(smtp.NewReply(538, smtp.E(5, 7, 11), "Encryption required for requested authentication mechanism"))
	case !s.ehlo:
		return s.bad(smtp.NewReply(503, smtp.E(5, 5, 1), "Say EHLO first"))
	case s.auth != nil:
		return s.bad(smtp.NewReply(503, smtp.E(5, 5, 1), "Already authenticated"))
	case s.txn != nil:
		return s.bad(smtp.NewReply(503, smtp.E(5, 5, 1), "AUTH not allowed during a mail transaction"))
	}
	mech, initial, hasInitial := strings.Cut(arg, " ")
	mech = strings.ToUpper(mech)
	var user string
	var err error
	switch mech {
	case "PLAIN":
		user, err = s.authPlain(initial, hasInitial)
	case "LOGIN":
		user, err = s.authLogin(initial, hasInitial)
	default:
		return s.bad(smtp.NewReply(504, smtp.E(5, 5, 4), "Unrecognized authentication type"))
	}
	var re *smtp.Error
	switch {
	case err == nil:
	case errors.As(err, &re):
		return s.bad(re.Reply)
	case errors.Is(err, errAuthFailed):
		s.opts.MailLog.ServerSession(s.id).Str("auth", mech).Str("user", user).Stat(535).Write()
		return s.bad(smtp.NewReply(535, smtp.E(5, 7, 8), "Authentication credentials invalid"))
	default:
		return errQuit // the connection failed
	}
	s.auth = &log.AuthInfo{Mechanism: mech, User: user}
	ctx, cancel := s.policyContext()
	s.pol.Authenticated(ctx, mech, user)
	cancel()
	s.opts.MailLog.ServerSession(s.id).Str("auth", mech).Str("user", user).Stat(0).Write()
	s.write(smtp.NewReply(235, smtp.E(2, 7, 0), "Authentication successful"))
	return nil
}

// authPlain runs AUTH PLAIN (RFC 4616) with go-sasl's server.
func (s *session) authPlain(initial string, hasInitial bool) (string, error) {
	var user string
	srv := sasl.NewPlainServer(func(identity, username, password string) error {
		user = username
		if identity != "" && identity != username {
			return errAuthFailed // no proxy authorization
		}
		if !s.opts.Auth.Authenticate(username, password) {
			return errAuthFailed
		}
		return nil
	})
	var resp []byte
	if hasInitial {
		var err error
		if resp, err = decodeResponse(initial); err != nil {
			return "", err
		}
	}
	for {
		challenge, done, err := srv.Next(resp)
		if err != nil {
			return user, errAuthFailed
		}
		if done {
			return user, nil
		}
		if resp, err = s.challenge(challenge); err != nil {
			return user, err
		}
	}
}

// authLogin runs AUTH LOGIN (draft-murchison-sasl-login). go-sasl dropped
// its LOGIN server, and the mechanism is two prompts, so it is written
// out here.
func (s *session) authLogin(initial string, hasInitial bool) (string, error) {
	var userb []byte
	var err error
	if hasInitial {
		userb, err = decodeResponse(initial)
	} else {
		userb, err = s.challenge([]byte("Username:"))
	}
	if err != nil {
		return "", err
	}
	pass, err := s.challenge([]byte("Password:"))
	if err != nil {
		return string(userb), err
	}
	if !s.opts.Auth.Authenticate(string(userb), string(pass)) {
		return string(userb), errAuthFailed
	}
	return string(userb), nil
}

// challenge sends a 334 challenge and reads the client's response.
func (s *session) challenge(c []byte) ([]byte, error) {
	s.write(smtp.NewReply(334, smtp.EnhancedCode{}, base64.StdEncoding.EncodeToString(c)))
	if err := s.flush(); err != nil {
		return nil, err
	}
	s.lr.SetLimit(authLineLimit)
	line, err := s.lr.ReadLine()
	s.lr.SetLimit(s.opts.MaxCommandLineLength)
	if err != nil {
		if errors.Is(err, smtp.ErrLineTooLong) {
			return nil, smtp.Errorf(500, smtp.E(5, 5, 6), "Authentication exchange line too long")
		}
		return nil, err
	}
	if string(line) == "*" {
		return nil, smtp.Errorf(501, smtp.E(5, 0, 0), "Authentication cancelled")
	}
	return decodeResponse(string(line))
}

// decodeResponse decodes a base64 response; "=" is the empty response.
func decodeResponse(s string) ([]byte, error) {
	if s == "=" {
		return []byte{}, nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, smtp.Errorf(501, smtp.E(5, 5, 2), "Invalid base64 in authentication exchange")
	}
	return b, nil
}
