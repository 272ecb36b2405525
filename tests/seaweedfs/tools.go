//go:build tools

// Package tools pins SeaweedFS's `weed` command in this wrapper module's go.mod; build.sh builds
// github.com/seaweedfs/seaweedfs/weed from it.
package tools

import _ "github.com/seaweedfs/seaweedfs/weed"
