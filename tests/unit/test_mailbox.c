/* test_mailbox: the lock-free inbox under concurrent producers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <poll.h>
#include <pthread.h>
#include <stdlib.h>

#include "mailbox.h"

#define PRODUCERS 4
#define PER_PRODUCER 20000

struct numbered {
    struct mail mail;
    int producer;
    int n;
};

static struct mailbox box;

static void *produce(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int i = 0; i < PER_PRODUCER; i++) {
        struct numbered *m = malloc(sizeof *m);
        m->producer = id;
        m->n = i;
        mailbox_post(&box, &m->mail);
    }
    return NULL;
}

/* Takes every producer's mail as the owner would, then joins the producers and closes box. */
static void receive_all_then_join(pthread_t *threads)
{
    int next[PRODUCERS] = {0};
    int received = 0;
    while (received < PRODUCERS * PER_PRODUCER) {
        struct pollfd p = {.fd = mailbox_fd(&box), .events = POLLIN};
        assert_int_equal(poll(&p, 1, 10000), 1);
        mailbox_ack(&box);
        struct mail *m;
        while ((m = mailbox_take(&box))) {
            struct numbered *nm = (struct numbered *)m;
            /* Each producer's mail arrives exactly once, in the order it was posted. */
            assert_int_equal(nm->n, next[nm->producer]);
            next[nm->producer]++;
            received++;
            free(nm);
        }
    }
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(threads[i], NULL);
    assert_null(mailbox_take(&box));
    mailbox_destroy(&box);
}

static void empty_mailbox_gives_nothing(void **state)
{
    (void)state;
    assert_int_equal(mailbox_init(&box), 0);
    assert_null(mailbox_take(&box));
    struct numbered one = {.n = 7};
    mailbox_post(&box, &one.mail);
    struct pollfd p = {.fd = mailbox_fd(&box), .events = POLLIN};
    assert_int_equal(poll(&p, 1, 1000), 1); /* a post wakes the owner */
    mailbox_ack(&box);
    assert_ptr_equal(mailbox_take(&box), &one.mail);
    assert_null(mailbox_take(&box));
    mailbox_destroy(&box);
}

static void concurrent_posts_arrive_once_in_order(void **state)
{
    (void)state;
    assert_int_equal(mailbox_init(&box), 0);
    pthread_t threads[PRODUCERS];
    for (intptr_t i = 0; i < PRODUCERS; i++)
        pthread_create(&threads[i], NULL, produce, (void *)i);
    receive_all_then_join(threads);
}

/* Producers that defer: each sends its posts in chains of a few, mixed with direct posts of
 * the other producers; every mail still arrives once and in each producer's order. */
static void *produce_deferred(void *arg)
{
    int id = (int)(intptr_t)arg;
    mailbox_defer_posts();
    for (int i = 0; i < PER_PRODUCER; i++) {
        struct numbered *m = malloc(sizeof *m);
        m->producer = id;
        m->n = i;
        mailbox_post(&box, &m->mail);
        if (i % 7 == 6)
            mailbox_send_deferred();
    }
    mailbox_send_deferred();
    return NULL;
}

static void deferred_posts_wait_for_the_send_then_arrive_in_order(void **state)
{
    (void)state;
    assert_int_equal(mailbox_init(&box), 0);
    struct mailbox other;
    assert_int_equal(mailbox_init(&other), 0);
    struct numbered a = {.n = 0}, b = {.n = 1}, c = {.n = 2}, x = {.n = 9};
    mailbox_defer_posts();
    mailbox_post(&box, &a.mail);
    mailbox_post(&other, &x.mail);
    mailbox_post(&box, &b.mail);
    mailbox_post(&box, &c.mail);
    /* Nothing has left yet: no wake-up, nothing to take. */
    struct pollfd p = {.fd = mailbox_fd(&box), .events = POLLIN};
    assert_int_equal(poll(&p, 1, 0), 0);
    assert_null(mailbox_take(&box));
    mailbox_send_deferred();
    assert_int_equal(poll(&p, 1, 1000), 1);
    mailbox_ack(&box);
    assert_ptr_equal(mailbox_take(&box), &a.mail);
    assert_ptr_equal(mailbox_take(&box), &b.mail);
    assert_ptr_equal(mailbox_take(&box), &c.mail);
    assert_null(mailbox_take(&box));
    assert_ptr_equal(mailbox_take(&other), &x.mail);
    assert_null(mailbox_take(&other));
    mailbox_send_deferred(); /* nothing left: sends nothing */
    assert_null(mailbox_take(&box));
    mailbox_destroy(&other);

    pthread_t threads[PRODUCERS];
    for (intptr_t i = 0; i < PRODUCERS; i++)
        pthread_create(&threads[i], NULL, i % 2 ? produce_deferred : produce, (void *)i);
    receive_all_then_join(threads);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(empty_mailbox_gives_nothing),
        cmocka_unit_test(concurrent_posts_arrive_once_in_order),
        cmocka_unit_test(deferred_posts_wait_for_the_send_then_arrive_in_order),
    };
    return cmocka_run_group_tests_name("mailbox", tests, NULL, NULL);
}
