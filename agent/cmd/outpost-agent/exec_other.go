//go:build !unix

package main

import "errors"

// Without exec, the agent does not watch its executable: the service
// manager restarts it after an upgrade.
const canExec = false

const runningImagePath = ""

func restartInto(string, []string) error {
	return errors.New("this system cannot replace a running process")
}
