//go:build tools

// Package tools pins the promtool command (Prometheus rule checks and unit tests).
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
