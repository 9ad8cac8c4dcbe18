package server

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestDocsReplyTable checks docs/smtp-server.md's reply table against the
// code, both ways: every reply the server (and the command parsers of
// package smtp it answers with) can send appears in the table with its
// code, enhanced code and text, and every reply of the table is one the
// code sends. A reply added, changed or removed without the table fails
// here.
func TestDocsReplyTable(t *testing.T) {
	code := codeReplies(t)
	doc := docReplies(t)
	if len(code) < 50 || len(doc) < 50 {
		t.Fatalf("found %d replies in the code and %d in the table: the scanners are broken", len(code), len(doc))
	}
	for _, c := range code {
		if !slices.ContainsFunc(doc, func(d reply) bool { return d.matches(c) }) {
			t.Errorf("%s: reply %q is not in the reply table of docs/smtp-server.md", c.where, c)
		}
	}
	for _, d := range doc {
		if !slices.ContainsFunc(code, func(c reply) bool { return d.matches(c) }) {
			t.Errorf("docs/smtp-server.md: reply %q is not one the code sends", d)
		}
	}
}

// reply is a reply as the code or the table writes it. Between the
// literal pieces of its text stands a value: a format verb or a run-time
// string in the code, a word such as HOST or N in the table.
type reply struct {
	code, enhanced string
	text           []string // literal pieces, between which stands a placeholder
	textKnown      bool     // false: the code builds the text at run time
	prefix         bool     // the table abbreviates: the text goes on
	where          string
}

func (r reply) String() string {
	s := r.code
	if r.enhanced != "" {
		s += " " + r.enhanced
	}
	if r.textKnown {
		s += " " + strings.Join(r.text, "*")
	}
	return s
}

// matches reports whether the table entry d describes the code's reply c:
// the same codes, and texts that agree where both are known. A
// placeholder on either side stands for any text; a table entry marked as
// a prefix may stop early.
func (d reply) matches(c reply) bool {
	if d.code != c.code || d.enhanced != c.enhanced {
		return false
	}
	if !d.textKnown || !c.textKnown {
		return true
	}
	return globMatch(glob(d.text), glob(c.text), d.prefix)
}

// glob joins literal pieces with '\x00' for the placeholders.
func glob(pieces []string) string { return strings.Join(pieces, "\x00") }

// globMatch matches the table's text a against the code's text b. In both
// '\x00' stands for a value: one word (text without spaces) or a
// placeholder of the other side. In a, '\x01' ("...") stands for any text.
// With prefix, a may end before b does.
func globMatch(a, b string, prefix bool) bool {
	memo := map[[2]int]bool{}
	var m func(i, j int) bool
	m = func(i, j int) bool {
		key := [2]int{i, j}
		if v, ok := memo[key]; ok {
			return v
		}
		var ok bool
		switch {
		case i == len(a):
			ok = j == len(b) || prefix
		case a[i] == 1:
			ok = m(i+1, j) || j < len(b) && m(i, j+1)
		case j == len(b):
			ok = false
		case a[i] == 0 && b[j] == 0:
			ok = m(i+1, j+1)
		case a[i] == 0:
			ok = b[j] != ' ' && (m(i+1, j+1) || m(i, j+1))
		case b[j] == 0:
			ok = a[i] != ' ' && (m(i+1, j+1) || m(i+1, j))
		default:
			ok = a[i] == b[j] && m(i+1, j+1)
		}
		memo[key] = ok
		return ok
	}
	return m(0, 0)
}

var verb = regexp.MustCompile(`%[-+# 0-9.]*[a-zA-Z]`)

// fromFormat splits a format string at its verbs.
func fromFormat(format string) []string { return verb.Split(format, -1) }

// codeReplies finds the replies in the server's source and in the command
// parsers of package smtp: smtp.NewReply and smtp.Reply literals,
// smtp.Errorf, decisionReply's defaults, and the text replies of writeNow
// and refuse.
func codeReplies(t *testing.T) []reply {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../command.go", "../address.go")
	var out []reply
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			where := func() string { return fset.Position(n.Pos()).String() }
			switch n := n.(type) {
			case *ast.CallExpr:
				switch fn := callName(n); fn {
				case "NewReply", "Errorf", "decisionReply":
					args := n.Args
					if fn == "decisionReply" {
						args = args[1:]
					}
					if len(args) < 3 || intLit(args[0]) == "" {
						return true // fmt.Errorf and the like
					}
					r := reply{code: intLit(args[0]), enhanced: enhancedLit(args[1]), where: where()}
					r.text, r.textKnown = textOf(args[2])
					if r.code != "" {
						out = append(out, r)
					}
				case "writeNow", "refuse":
					format := n.Args[0]
					if fn == "refuse" {
						format = n.Args[2]
					}
					s, ok := stringLit(format)
					if !ok {
						t.Fatalf("%s: %s with a format that is not a literal", where(), fn)
					}
					out = append(out, parseTextReply(s, where()))
				}
			case *ast.CompositeLit:
				if sel, ok := n.Type.(*ast.SelectorExpr); ok && sel.Sel.Name == "Reply" {
					r := reply{where: where()}
					for _, e := range n.Elts {
						kv := e.(*ast.KeyValueExpr)
						switch kv.Key.(*ast.Ident).Name {
						case "Code":
							r.code = intLit(kv.Value)
						case "Enhanced":
							r.enhanced = enhancedLit(kv.Value)
						}
					}
					if r.code != "" {
						out = append(out, r)
					}
				}
			}
			return true
		})
	}
	return out
}

// parseTextReply splits "421 4.7.0 %s Text" into its parts.
func parseTextReply(s, where string) reply {
	fields := strings.SplitN(s, " ", 3)
	r := reply{code: fields[0], where: where, textKnown: true}
	rest := strings.Join(fields[1:], " ")
	if len(fields) > 1 && regexp.MustCompile(`^[245]\.\d+\.\d+$`).MatchString(fields[1]) {
		r.enhanced = fields[1]
		rest = strings.Join(fields[2:], " ")
	}
	r.text = fromFormat(rest)
	return r
}

func callName(c *ast.CallExpr) string {
	switch fn := c.Fun.(type) {
	case *ast.Ident:
		return fn.Name
	case *ast.SelectorExpr:
		return fn.Sel.Name
	}
	return ""
}

func intLit(e ast.Expr) string {
	if l, ok := e.(*ast.BasicLit); ok && l.Kind == token.INT {
		return l.Value
	}
	return ""
}

// enhancedLit renders smtp.E(a, b, c) or E(a, b, c) as "a.b.c", and
// smtp.EnhancedCode{} as "".
func enhancedLit(e ast.Expr) string {
	c, ok := e.(*ast.CallExpr)
	if !ok || callName(c) != "E" {
		return ""
	}
	parts := make([]string, len(c.Args))
	for i, a := range c.Args {
		parts[i] = intLit(a)
	}
	return strings.Join(parts, ".")
}

func stringLit(e ast.Expr) (string, bool) {
	l, ok := e.(*ast.BasicLit)
	if !ok || l.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(l.Value)
	return s, err == nil
}

// textOf returns the literal pieces of a reply text: a string literal, a
// format given to fmt.Sprintf, or a concatenation of literals and
// run-time values. known is false when nothing of it is literal.
func textOf(e ast.Expr) (pieces []string, known bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		s, ok := stringLit(e)
		return fromFormat(s), ok
	case *ast.CallExpr:
		if callName(e) == "Sprintf" {
			if s, ok := stringLit(e.Args[0]); ok {
				return fromFormat(s), true
			}
		}
	case *ast.BinaryExpr:
		if e.Op == token.ADD {
			l, lok := textOf(e.X)
			r, rok := textOf(e.Y)
			if !lok {
				l = []string{"", ""}
			}
			if !rok {
				r = []string{"", ""}
			}
			if !lok && !rok {
				return nil, false
			}
			// The last piece of l and the first of r touch.
			joined := append(append([]string{}, l[:len(l)-1]...), l[len(l)-1]+r[0])
			return append(joined, r[1:]...), true
		}
	}
	return nil, false
}

// placeholder is a word of the table that stands for a value.
var placeholder = regexp.MustCompile(`\b(HOST|N|NAME|ADDR|addr|VERB|NODE|SS_TA|VERSION)\b`)

// docReplies reads the reply table of docs/smtp-server.md: the replies in
// backquotes in its second column, several separated by " / ". A piece
// that does not start with a code ("... open connections ...") only
// repeats the reply before it and is left out. The table may stop a text
// before the code's ends, or end it with "..."; inside a text "..." and the
// words HOST, N, NAME, ADDR, addr, VERB, NODE, SS_TA and VERSION stand for
// values.
func docReplies(t *testing.T) []reply {
	t.Helper()
	b, err := os.ReadFile("../../docs/smtp-server.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(b), "\n## Replies\n")
	if !ok {
		t.Fatal("docs/smtp-server.md has no ## Replies section")
	}
	table, _, _ = strings.Cut(table, "\n## ")
	var out []reply
	quoted := regexp.MustCompile("`([^`]*)`")
	for line := range strings.SplitSeq(table, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || strings.HasPrefix(strings.TrimSpace(cells[1]), "---") || strings.TrimSpace(cells[1]) == "situation" {
			continue
		}
		for _, m := range quoted.FindAllStringSubmatch(cells[2], -1) {
			s := m[1]
			if !regexp.MustCompile(`^\d{3}[ -]`).MatchString(s) {
				continue
			}
			out = append(out, parseDocReply(s))
		}
	}
	return out
}

func parseDocReply(s string) reply {
	r := reply{code: s[:3], prefix: true}
	fields := strings.Fields(s[4:])
	if len(fields) > 0 && regexp.MustCompile(`^[245]\.\d+\.\d+$`).MatchString(fields[0]) {
		r.enhanced = fields[0]
		fields = fields[1:]
	}
	text := strings.TrimSuffix(strings.Join(fields, " "), "...")
	if text != "" {
		text = placeholder.ReplaceAllString(strings.ReplaceAll(text, "...", "\x01"), "\x00")
		r.text, r.textKnown = strings.Split(text, "\x00"), true
	}
	return r
}

// TestDocsListEveryOption checks that docs/smtp-server.md names every
// field of Options, in its options table or its wiring example.
func TestDocsListEveryOption(t *testing.T) {
	b, err := os.ReadFile("../../docs/smtp-server.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	typ := reflect.TypeFor[Options]()
	for i := range typ.NumField() {
		name := typ.Field(i).Name
		if !strings.Contains(doc, "| `"+name+"` |") && !strings.Contains(doc, "    "+name+":") {
			t.Errorf("docs/smtp-server.md does not document Options.%s", name)
		}
	}
}
