/* main: parses options, starts the server, and turns signals into a TLS reload or a shutdown. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "server.h"
#include "tls.h"

/* Creates dir and its parents (mode 0700: the data is the users'). Returns 0 or -errno. */
static int make_dirs(const char *dir)
{
    char path[4096];
    size_t len = strlen(dir);
    if (len >= sizeof path)
        return -ENAMETOOLONG;
    memcpy(path, dir, len + 1);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0700) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* SIGHUP: new TLS connections get the certificate and key as the files now are. */
static void reload_tls(void)
{
    if (!tls_enabled()) {
        log_info("msg=sighup_ignored reason=\"no TLS certificate to reload\"");
        return;
    }
    char err[512], q[600];
    if (tls_reload(err, sizeof err) < 0) {
        log_error(
            "msg=tls_reload_failed error=%s reason=\"still serving the previous certificate\"",
            log_quote(q, sizeof q, err, strlen(err)));
        return;
    }
    log_info("msg=tls_reloaded");
}

int main(int argc, char **argv)
{
    struct config cfg;
    switch (config_parse(&cfg, argc, argv)) {
    case CONFIG_EXIT_OK:
        return 0;
    case CONFIG_ERROR:
        return 2;
    case CONFIG_OK:
        break;
    }
    log_set_level(cfg.log_level);

    /* Workers inherit this mask: signals reach only the sigwait below. */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN); /* a peer that hangs up is an EPIPE, not a crash */

    int rc = make_dirs(cfg.data_dir);
    if (rc < 0) {
        log_error("msg=data_dir_failed dir=\"%s\" error=\"%s\"", cfg.data_dir, strerror(-rc));
        return 2;
    }
    struct server *server = server_start(&cfg);
    if (!server)
        return 2;
    log_info("msg=ready version=%s workers=%d node=\"%s\" data=\"%s\" pid=%d tls=%s",
             PARLEY_VERSION, cfg.workers, cfg.node, cfg.data_dir, (int)getpid(),
             !cfg.tls_cert        ? "off"
             : cfg.has_telnet_tls ? "http,telnet_tls"
                                  : "http");

    int sig;
    for (;;) {
        if (sigwait(&signals, &sig) != 0)
            continue;
        if (sig == SIGINT || sig == SIGTERM)
            break;
        if (sig == SIGHUP)
            reload_tls();
    }
    log_info("msg=shutting_down signal=%s", sig == SIGINT ? "SIGINT" : "SIGTERM");
    /* A second signal during the goodbye ends the process at once. */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    sigdelset(&signals, SIGHUP); /* stays blocked: a reload during shutdown must not kill us */
    pthread_sigmask(SIG_UNBLOCK, &signals, NULL);
    server_stop(server, 4000);
    config_free(&cfg);
    log_info("msg=stopped");
    return 0;
}
