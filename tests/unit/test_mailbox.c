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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(empty_mailbox_gives_nothing),
        cmocka_unit_test(concurrent_posts_arrive_once_in_order),
    };
    return cmocka_run_group_tests_name("mailbox", tests, NULL, NULL);
}
