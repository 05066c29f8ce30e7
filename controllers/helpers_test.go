package controllers

import (
	"context"
	"encoding/base64"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

func decodeBase64(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func regexpMatch(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }

// waitEvent waits for an event with reason about the object named regarding.
func waitEvent(t *testing.T, ns, regarding, reason string) {
	t.Helper()
	eventually(t, 20*time.Second, "event "+reason+" for "+regarding, func() error {
		var list eventsv1.EventList
		if err := k8s.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
			return err
		}
		var seen []string
		for _, e := range list.Items {
			if e.Regarding.Name == regarding && e.Reason == reason {
				return nil
			}
			seen = append(seen, e.Regarding.Name+":"+e.Reason)
		}
		return fmt.Errorf("events seen: %v", seen)
	})
}
