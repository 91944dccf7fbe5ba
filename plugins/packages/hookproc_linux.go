package packages

import "syscall"

// hookDiesWithPlugin has the kernel send the hook SIGKILL when the thread
// that started it exits, which runHook makes happen only with the plugin
// process: it holds that thread for itself until the hook is reaped.
func hookDiesWithPlugin(attr *syscall.SysProcAttr) { attr.Pdeathsig = syscall.SIGKILL }
