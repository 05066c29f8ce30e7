package controllers

import (
	"encoding/base64"
	"fmt"
)

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

func decodeBase64(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }
