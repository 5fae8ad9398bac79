/*
 * service: a thread with its own event loop and mailbox, for the threads
 * that are not workers: the hub, the store and password hashing. It runs
 * on_mail for each mail and before_sleep once a turn (where a store commits
 * the batch it gathered: group commit falls out of draining the mailbox).
 */
#ifndef PARLEY_SERVICE_H
#define PARLEY_SERVICE_H

#include <pthread.h>
#include <stdbool.h>

#include "loop.h"
#include "mailbox.h"

struct service {
    const char *name;
    struct loop *loop;
    struct mailbox mailbox;
    struct loop_watch watch;
    pthread_t thread;
    bool started;
    void (*on_mail)(struct service *s, struct mail *m);
    void (*before_sleep)(struct service *s); /* optional */
    void *ctx;
};

/* Prepares s. Returns 0 or a negative errno. */
int service_init(struct service *s, const char *name,
                 void (*on_mail)(struct service *, struct mail *),
                 void (*before_sleep)(struct service *), void *ctx);
/* Starts the thread. Returns 0 or a negative errno. */
int service_start(struct service *s);
/* Asks the thread to finish its current turn and stop, and waits for it. */
void service_stop(struct service *s);
/* Frees the loop and mailbox; drop() receives each mail still queued. */
void service_destroy(struct service *s, void (*drop)(struct mail *m));

#endif
