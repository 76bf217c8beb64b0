// Package sdnotify sends systemd's sd_notify messages (READY=1, STOPPING=1, RELOADING=1) to the
// socket in NOTIFY_SOCKET, so warmpool works as a Type=notify unit.
package sdnotify
