//go:build tools

// Package tools pins etcd's server, which is itself a main package.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)
