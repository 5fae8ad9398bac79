/* notify: sd_notify messages for systemd's Type=notify (libsystemd). */
#include "notify.h"

#include <stdint.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "log.h"

/* Sends one message; sd_notify returns 0 without NOTIFY_SOCKET. */
static void send_state(const char *state)
{
    int rc = sd_notify(0, state);
    if (rc < 0)
        log_warn("msg=notify_failed error=%d", rc);
}

void notify_ready(pid_t pid, const char *status)
{
    char msg[256];
    snprintf(msg, sizeof msg, "READY=1\nMAINPID=%d\nSTATUS=%s", (int)pid, status);
    send_state(msg);
}

void notify_reloading(const char *status)
{
    /* systemd 253 and later want the time of the reload with it; older ones ignore it. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char msg[256];
    snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=%s",
             (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000,
             status);
    send_state(msg);
}

void notify_stopping(void)
{
    send_state("STOPPING=1\nSTATUS=stopping");
}
