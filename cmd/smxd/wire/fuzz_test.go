package wire

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzReadQMGRConf reads arbitrary qmgr_conf map files: the reader must
// never panic, and every limit it returns is a number it read, with a
// valid net for the incoming ones.
func FuzzReadQMGRConf(f *testing.F) {
	for _, s := range []string{
		"oci:10.1 4\nocm:10.1 20\nocm: 50\nicr:192.0.2 50\nicm:192.0.2.7 5\n",
		"icm:2001:db8::1 3\n", "icr:10.1.2.3.4 5\n", "oci:x many\n", "octo: 30\n", "smtpc_session_conf:x y\n",
		"# comment\n\nocm:10 -1\n", "icm: 1\n", "icr:256.1 2\n", ":\n", "oci:10.1 99999999999999999999\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		path := filepath.Join(t.TempDir(), "qmgr.conf")
		if err := os.WriteFile(path, src, 0o644); err != nil {
			t.Fatal(err)
		}
		qc, err := ReadQMGRConf(path)
		if err != nil {
			return
		}
		for _, l := range qc.Outgoing {
			if l.Initial < 0 || l.Max < 0 {
				t.Fatalf("negative outgoing limit %+v", l)
			}
		}
		for _, o := range qc.Incoming {
			if !o.Net.IsValid() || o.Rate < 0 || o.Max < 0 {
				t.Fatalf("bad incoming limit %+v", o)
			}
		}
	})
}
