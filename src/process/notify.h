/*
 * notify: tells the service manager (systemd, through sd_notify and
 * $NOTIFY_SOCKET) how the process is doing: ready, reloading (an upgrade has
 * started), which process is the service's main one now, stopping. Every call
 * is a no-op without NOTIFY_SOCKET, so parley runs the same outside systemd.
 */
#ifndef PARLEY_NOTIFY_H
#define PARLEY_NOTIFY_H

#include <sys/types.h>

/* READY=1 and MAINPID=pid: pid serves (at start, and when an upgrade ends either way). */
void notify_ready(pid_t pid, const char *status);
/* RELOADING=1: an upgrade started. */
void notify_reloading(const char *status);
/* STOPPING=1: the service is going away (SIGTERM), not handing over. */
void notify_stopping(void);

#endif
