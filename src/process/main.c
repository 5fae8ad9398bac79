/* main: parses options (or runs `parley upgrade`), blocks signals for every thread, and hands the
 * process to upgrade_run, which serves until a stop or a handover. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "upgrade.h"

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

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "upgrade") == 0)
        return upgrade_command(argc, argv);
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

    /* Every thread inherits this mask: these signals reach only the main thread's signalfd. */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGHUP);
    sigaddset(&signals, SIGUSR2); /* an upgrade: never again the default action (death) */
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN); /* a peer that hangs up is an EPIPE, not a crash */

    int rc = make_dirs(cfg.data_dir);
    if (rc < 0) {
        log_error("msg=data_dir_failed dir=\"%s\" error=\"%s\"", cfg.data_dir, strerror(-rc));
        return 2;
    }
    int status = upgrade_run(&cfg, argc, argv);
    config_free(&cfg);
    return status;
}
