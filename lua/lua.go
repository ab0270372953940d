// Package lua holds the Redis Lua scripts of the presence cluster, one per
// file. Every script that touches a room gets lib.lua prepended; see the
// header of each file for its KEYS and ARGV.
package lua

import (
	"embed"
	"fmt"
)

//go:embed *.lua
var files embed.FS

// Source returns the full source of the named script (lib.lua prepended).
func Source(name string) string {
	lib, err := files.ReadFile("lib.lua")
	if err != nil {
		panic(err)
	}
	b, err := files.ReadFile(name + ".lua")
	if err != nil {
		panic(fmt.Sprintf("lua: no script %q", name))
	}
	return string(lib) + string(b)
}
