//go:build linux

package main

import (
	"os/exec"
	"syscall"
)

// setChildAttrs makes a worker die with its parent.
func setChildAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
