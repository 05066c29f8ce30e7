package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
)

// objstoreFlags give the bucket configuration as Thanos does: a file or inline YAML.
type objstoreFlags struct {
	file   string
	inline string
}

func (o *objstoreFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&o.file, "objstore.config-file", "", "Path to a YAML file with the object storage configuration (type + config, Thanos format).")
	fs.StringVar(&o.inline, "objstore.config", "", "Object storage configuration YAML, instead of --objstore.config-file.")
}

// load returns the configured YAML, or nil when none is given.
func (o *objstoreFlags) load() ([]byte, error) {
	switch {
	case o.file != "" && o.inline != "":
		return nil, errors.New("give --objstore.config-file or --objstore.config, not both")
	case o.file != "":
		b, err := os.ReadFile(o.file)
		if err != nil {
			return nil, fmt.Errorf("read --objstore.config-file: %w", err)
		}
		return b, nil
	case o.inline != "":
		return []byte(o.inline), nil
	}
	return nil, nil
}
