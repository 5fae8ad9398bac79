/* test_loop: the event loop's timer heap, fd watches and before-sleep hook. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sys/epoll.h>
#include <unistd.h>

#include "loop.h"

#define N_TIMERS 200

static struct loop *the_loop;
static uint64_t fired[N_TIMERS];
static int fired_count;

struct order_timer {
    struct timer t;
    uint64_t key;
};

static void record(struct timer *t)
{
    fired[fired_count++] = t->due_ms;
    if (fired_count == N_TIMERS)
        loop_stop(the_loop);
}

static void timers_fire_in_due_order(void **state)
{
    (void)state;
    the_loop = loop_new();
    assert_non_null(the_loop);
    static struct timer timers[N_TIMERS];
    uint64_t base = loop_now(the_loop);
    fired_count = 0;
    /* Scatter due times (some equal, some in the past) to exercise the heap. */
    for (int i = 0; i < N_TIMERS; i++) {
        timer_init(&timers[i], record);
        timer_start(the_loop, &timers[i], base + (uint64_t)((i * 37) % 23));
    }
    loop_run(the_loop);
    assert_int_equal(fired_count, N_TIMERS);
    for (int i = 1; i < N_TIMERS; i++)
        assert_true(fired[i - 1] <= fired[i]);
    loop_free(the_loop);
}

static int stopped_ran;
static void must_not_run(struct timer *t)
{
    (void)t;
    stopped_ran++;
}
static void stop_loop(struct timer *t)
{
    (void)t;
    loop_stop(the_loop);
}

static void stopped_and_rescheduled_timers(void **state)
{
    (void)state;
    the_loop = loop_new();
    struct timer a, b, c, end;
    timer_init(&a, must_not_run);
    timer_init(&b, must_not_run);
    timer_init(&c, record);
    timer_init(&end, stop_loop);
    uint64_t now = loop_now(the_loop);
    fired_count = 0;
    timer_start(the_loop, &a, now + 1);
    timer_start(the_loop, &b, now + 2);
    timer_start(the_loop, &c, now + 100000);
    timer_start(the_loop, &end, now + 20);
    assert_true(timer_active(&a));
    timer_stop(the_loop, &a);
    timer_stop(the_loop, &a); /* stopping twice is harmless */
    assert_false(timer_active(&a));
    timer_start(the_loop, &b, now + 100000); /* moved later: must not fire */
    timer_start(the_loop, &c, now + 3);      /* moved earlier: must fire */
    loop_run(the_loop);
    assert_int_equal(stopped_ran, 0);
    assert_int_equal(fired_count, 1);
    assert_false(timer_active(&c));
    assert_true(timer_active(&b));
    timer_stop(the_loop, &b);
    loop_free(the_loop);
}

struct pipe_watch {
    struct loop_watch w;
    int fd;
    int reads;
};

static void on_readable(struct loop_watch *w, uint32_t events)
{
    struct pipe_watch *pw = (struct pipe_watch *)w;
    assert_true(events & EPOLLIN);
    char buf[8];
    assert_int_equal(read(pw->fd, buf, sizeof buf), 1);
    pw->reads++;
    loop_stop(the_loop);
}

static int hook_calls;
static void hook(void *arg)
{
    (void)arg;
    hook_calls++;
}

static void watch_reports_readable_fd(void **state)
{
    (void)state;
    the_loop = loop_new();
    int p[2];
    assert_int_equal(pipe(p), 0);
    struct pipe_watch pw = {.w.cb = on_readable, .fd = p[0]};
    assert_int_equal(loop_watch_add(the_loop, p[0], EPOLLIN, &pw.w), 0);
    assert_int_equal(loop_watch_add(the_loop, p[0], EPOLLIN, &pw.w), -17 /* EEXIST */);
    loop_set_before_sleep(the_loop, hook, NULL);
    assert_int_equal(write(p[1], "x", 1), 1);
    loop_run(the_loop);
    assert_int_equal(pw.reads, 1);
    assert_true(hook_calls >= 1);
    assert_int_equal(loop_watch_del(the_loop, p[0]), 0);
    close(p[0]);
    close(p[1]);
    loop_free(the_loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(timers_fire_in_due_order),
        cmocka_unit_test(stopped_and_rescheduled_timers),
        cmocka_unit_test(watch_reports_readable_fd),
    };
    return cmocka_run_group_tests_name("loop", tests, NULL, NULL);
}
