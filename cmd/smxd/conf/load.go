package conf

import (
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
)

// DefaultSource is the configuration smxd uses without -f: it listens on
// 127.0.0.1:2525, keeps its queue in ./var/smx, accepts mail from loopback
// clients and relays it, and takes the host name from the machine.
//
//go:embed default.conf
var DefaultSource []byte

// DefaultName is the name errors and dumps give the embedded default.
const DefaultName = "default.conf (embedded)"

// Load reads, decodes, resolves and validates the configuration file at
// path. The returned Config's Warnings list what was accepted but ignored.
func Load(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("conf: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("conf: %w", err)
	}
	return LoadSource(path, src, filepath.Dir(abs), OSEnv())
}

// Default returns the embedded default configuration, resolved against the
// working directory.
func Default() (*Config, error) {
	return LoadSource(DefaultName, DefaultSource, "", OSEnv())
}

// LoadSource is Load for configuration text: name is used in messages,
// dir is the directory relative map and TLS paths start from ("" for the
// working directory).
func LoadSource(name string, src []byte, dir string, env Env) (*Config, error) {
	root, err := Parse(name, src)
	if err != nil {
		return nil, err
	}
	c, err := Decode(root)
	if err != nil {
		return nil, err
	}
	if name != DefaultName {
		c.File = name
	}
	c.Dir = dir
	if err := c.Resolve(env); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}
