/* service: a mailbox-driven thread with its own loop. */
#include "service.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "alloc.h"

/* Mails taken between two sends of a service's deferred posts (mailbox.h). */
#define SEND_EVERY 64

static void on_wake(struct loop_watch *w, uint32_t events)
{
    (void)events;
    struct service *s = (struct service *)((char *)w - offsetof(struct service, watch));
    mailbox_ack(&s->mailbox);
    struct mail *m;
    unsigned taken = 0;
    while ((m = mailbox_take(&s->mailbox))) {
        if (m->kind == MAIL_STOP) {
            free(m);
            loop_stop(s->loop);
            continue;
        }
        s->on_mail(s, m);
        /* A long drain (a join storm) passes its posts on as it goes, in chains. */
        if (++taken % SEND_EVERY == 0)
            mailbox_send_deferred();
    }
}

static void before_sleep(void *arg)
{
    struct service *s = arg;
    /* What the turn's mail asked of others leaves before the turn's own work (the store's
     * commit, the hub's deliveries), so a read's answer does not wait for a commit. */
    mailbox_send_deferred();
    if (s->before_sleep)
        s->before_sleep(s);
}

int service_init(struct service *s, const char *name,
                 void (*on_mail)(struct service *, struct mail *), void (*hook)(struct service *),
                 void *ctx)
{
    memset(s, 0, sizeof *s);
    s->name = name;
    s->on_mail = on_mail;
    s->before_sleep = hook;
    s->ctx = ctx;
    s->loop = loop_new();
    if (!s->loop)
        return -errno;
    int rc = mailbox_init(&s->mailbox);
    if (rc < 0)
        return rc;
    s->watch.cb = on_wake;
    loop_set_before_sleep(s->loop, before_sleep, s);
    return loop_watch_add(s->loop, mailbox_fd(&s->mailbox), EPOLLIN, &s->watch);
}

static void *run(void *arg)
{
    struct service *s = arg;
    mailbox_defer_posts(); /* a service never waits inside a turn */
    loop_run(s->loop);
    return NULL;
}

int service_start(struct service *s)
{
    int rc = pthread_create(&s->thread, NULL, run, s);
    if (rc)
        return -rc;
    s->started = true;
    return 0;
}

void service_stop(struct service *s)
{
    if (!s->started)
        return;
    struct mail *stop = xcalloc(1, sizeof *stop);
    stop->kind = MAIL_STOP;
    mailbox_post(&s->mailbox, stop);
    pthread_join(s->thread, NULL);
    s->started = false;
}

void service_destroy(struct service *s, void (*drop)(struct mail *m))
{
    if (s->mailbox.efd >= 0) {
        struct mail *m;
        while ((m = mailbox_take(&s->mailbox))) {
            if (m->kind == MAIL_STOP)
                free(m);
            else
                drop(m);
        }
        mailbox_destroy(&s->mailbox);
    }
    loop_free(s->loop);
    s->loop = NULL;
}
