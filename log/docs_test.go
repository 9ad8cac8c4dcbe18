package log

import (
	"bufio"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDocsListEveryField checks that docs/eventlog.md lists every field of
// the catalogue, with its msgpack key, under the heading of its type.
func TestDocsListEveryField(t *testing.T) {
	f, err := os.Open("../docs/eventlog.md")
	require.NoError(t, err)
	defer f.Close()
	documented := map[string]map[string]string{} // type -> field -> key cell
	var section string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if name, ok := strings.CutPrefix(line, "### "); ok {
			section = name
			documented[section] = map[string]string{}
			continue
		}
		if section == "" || !strings.HasPrefix(line, "| ") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) > 3 {
			documented[section][strings.TrimSpace(cells[1])] = strings.TrimSpace(cells[2])
		}
	}
	require.NoError(t, sc.Err())

	types := []any{Recipient{}, TLSInfo{}, AuthInfo{}, NextHop{}, ExpandedRcpt{}, RcptReply{}, Operator{}}
	for _, e := range everyType() {
		types = append(types, reflect.ValueOf(e.Payload).Elem().Interface())
	}
	for _, v := range types {
		typ := reflect.TypeOf(v)
		for i := 0; i < typ.NumField(); i++ {
			field := typ.Field(i)
			if field.Anonymous {
				continue // Operator, documented on its own
			}
			key, _, _ := strings.Cut(field.Tag.Get("msgpack"), ",")
			rows, ok := documented[typ.Name()]
			require.True(t, ok, "docs/eventlog.md has no section ### %s", typ.Name())
			cell, ok := rows[field.Name]
			require.True(t, ok, "docs/eventlog.md does not list %s.%s", typ.Name(), field.Name)
			require.Equal(t, "`"+key+"`", cell, "key of %s.%s in docs/eventlog.md", typ.Name(), field.Name)
		}
	}
	for n, name := range eventTypeNames {
		if name != "" {
			require.Equal(t, name, documented["Types"][strconv.Itoa(n)], "type %d in docs/eventlog.md", n)
		}
	}
}
