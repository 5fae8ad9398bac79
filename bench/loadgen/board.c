/* board: shared memory between the coordinator and its workers. */
#include "board.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static size_t align64(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

struct board *board_create(uint32_t workers, uint32_t clients, uint32_t messages, uint32_t rooms)
{
    size_t off_msg = align64(sizeof(struct board));
    size_t off_room = align64(off_msg + (size_t)messages * sizeof(atomic_uint_fast32_t));
    size_t off_sent = align64(off_room + (size_t)rooms * sizeof(atomic_uint_fast64_t));
    size_t off_w = align64(off_sent + (size_t)clients * sizeof(atomic_uint_fast32_t));
    size_t size = off_w + (size_t)workers * sizeof(struct board_worker);
    uint8_t *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        fprintf(stderr, "loadgen: mmap of %zu bytes: %s\n", size, strerror(errno));
        return NULL;
    }
    struct board *b = (struct board *)mem; /* zero-filled by mmap */
    b->workers = workers;
    b->clients = clients;
    b->msg_count = (atomic_uint_fast32_t *)(mem + off_msg);
    b->room_final = (atomic_uint_fast64_t *)(mem + off_room);
    b->sender_sent = (atomic_uint_fast32_t *)(mem + off_sent);
    b->w = (struct board_worker *)(mem + off_w);
    hist_init(&b->rounds);
    atomic_init(&b->phase, PH_SETUP);
    for (uint32_t i = 0; i < workers; i++) {
        b->w[i].efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (b->w[i].efd < 0) {
            fprintf(stderr, "loadgen: eventfd: %s\n", strerror(errno));
            return NULL;
        }
        hist_init(&b->w[i].latency);
        hist_init(&b->w[i].fanout);
        hist_init(&b->w[i].setup);
    }
    return b;
}

void board_wake(struct board *b, uint32_t i)
{
    uint64_t one = 1;
    ssize_t r;
    do
        r = write(b->w[i].efd, &one, sizeof one);
    while (r < 0 && errno == EINTR);
}

void board_set_phase(struct board *b, enum phase p)
{
    atomic_store(&b->phase, (int)p);
    for (uint32_t i = 0; i < b->workers; i++)
        board_wake(b, i);
}

void board_max(atomic_uint_fast64_t *slot, uint64_t v)
{
    uint_fast64_t cur = atomic_load_explicit(slot, memory_order_relaxed);
    while (cur < v && !atomic_compare_exchange_weak(slot, &cur, v))
        ;
}

uint64_t board_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
