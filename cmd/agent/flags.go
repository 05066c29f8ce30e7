package main

import (
	"flag"
	"fmt"
	"os"
)

// contentFlag is a Thanos-style pair of flags: --NAME-file and --NAME.
type contentFlag struct {
	name   string
	file   string
	inline string
}

func (c *contentFlag) register(fs *flag.FlagSet, name, help string) {
	c.name = name
	fs.StringVar(&c.file, name+"-file", "", "Path to a YAML file with "+help+".")
	fs.StringVar(&c.inline, name, "", help+" as inline YAML, instead of --"+name+"-file.")
}

func (c *contentFlag) load() ([]byte, error) {
	switch {
	case c.file != "" && c.inline != "":
		return nil, fmt.Errorf("give --%s-file or --%s, not both", c.name, c.name)
	case c.file != "":
		b, err := os.ReadFile(c.file)
		if err != nil {
			return nil, fmt.Errorf("read --%s-file: %w", c.name, err)
		}
		return b, nil
	case c.inline != "":
		return []byte(c.inline), nil
	}
	return nil, nil
}

// registerObjstore registers the bucket configuration flags, named as in
// Thanos: --objstore.config-file and --objstore.config.
func (c *contentFlag) registerObjstore(fs *flag.FlagSet) {
	c.register(fs, "objstore.config", "the object storage configuration (type + config, Thanos format)")
}
