package conf

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestEveryOptionIsDocumented keeps docs/configuration.md complete: every
// option, section and flag name must appear in it, in backquotes.
func TestEveryOptionIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/configuration.md")
	require.NoError(t, err)
	var missing []string
	var walk func(t reflect.Type, path string)
	walk = func(typ reflect.Type, path string) {
		for _, f := range fieldsOf(typ) {
			if f.kind == kindName {
				continue
			}
			name := f.name()
			if !strings.Contains(string(doc), "`"+name+"`") && !strings.Contains(string(doc), "`"+name+" NAME`") {
				missing = append(missing, path+name)
			}
			switch f.kind {
			case kindSection, kindFlags:
				walk(f.typ, path+name+".")
			case kindSections:
				walk(f.typ.Elem(), path+name+".")
			}
		}
	}
	walk(reflect.TypeOf(Config{}), "")
	require.Empty(t, missing, "options missing from docs/configuration.md")
}
