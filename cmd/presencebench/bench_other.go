//go:build !linux

package main

import "os/exec"

// setChildAttrs: a worker notices its parent's end when its stdin closes.
func setChildAttrs(cmd *exec.Cmd) {}
