/*
 * handover: a live upgrade's work on each worker thread. In the old process:
 * holding the input of the connections that can move, waiting for what they
 * have on its way, writing each one's record (handover_rec.h) and parking it,
 * then dropping it (moved) or opening it again (refused). In the process that
 * takes over: adopting each connection from its record, its I/O held, and
 * letting all of them go on once the handover is over. The main thread
 * (upgrade.c) runs the steps and talks to the other process; it reaches the
 * workers only by mail.
 *
 * DESIGN: a connection can move when it is open, plain (not TLS: without kernel
 * TLS its record layer cannot move), an HTTP, WebSocket or telnet session, and
 * has nothing on its way that this process must answer (a request sent to the
 * hub, the store or auth; a compressed message half inflated): one that has is
 * "busy" and waited for, up to a bound, with its input held meanwhile (input
 * not read stays in the socket for the next process). A parked connection is
 * neither read nor written here; its socket is in the other process too, which
 * neither reads nor writes it until the handover is over. So a socket is never
 * written by both: until the old process says the handover is over (and drops
 * its parked connections), the new one holds every adopted connection's I/O;
 * after, the old one has let go.
 */
#ifndef PARLEY_HANDOVER_H
#define PARLEY_HANDOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "handover_rec.h"
#include "mailbox.h"
#include "worker.h"

enum handover_op {
    /* main -> a worker of the old process */
    HO_FREEZE,   /* hold the input of movable connections; reply HO_QUIET once none is busy */
    HO_UNFREEZE, /* the upgrade failed before GO: read again */
    HO_COLLECT,  /* (relayed by the hub) write and park every movable connection; HO_COLLECTED */
    HO_SETTLE,   /* ids[] moved (drop them) or were refused (open them again, for the drain) */
    HO_SAVE_ALL, /* recovery: write every movable connection and let go of it; HO_COLLECTED */
    /* main -> a worker of the new process */
    HO_ADOPT, /* a record and its socket: adopt it, its I/O held; reply HO_ADOPTED */
    HO_THAW,  /* the handover is over: every adopted connection goes on */
    /* replies to main */
    HO_QUIET,
    HO_COLLECTED,
    HO_ADOPTED,
};

/* One connection written by HO_COLLECT or HO_SAVE_ALL: its record is recs.buf[off, off+len). */
struct handover_item {
    uint64_t conn_id;
    int fd;
    size_t off, len;
};

struct handover_mail {
    struct mail mail; /* MAIL_HANDOVER */
    enum handover_op op;
    int worker;            /* replies: the worker's id */
    struct mailbox *reply; /* requests: where the reply goes */
    uint16_t version;      /* FREEZE, COLLECT, SAVE_ALL: the record version to write */
    uint64_t deadline_ms;  /* COLLECT: busy connections are waited for until then (clock_ms) */
    bool final;            /* COLLECTED: the worker's last for this COLLECT */
    struct hr_writer recs; /* COLLECTED: the records; ADOPT: the one record */
    struct handover_item *items;
    size_t n_items;
    uint64_t *ids; /* SETTLE */
    size_t n_ids;
    bool moved;       /* SETTLE: moved (dropped) or refused (opened again) */
    int fd;           /* ADOPT: the socket (the worker owns it from then on) */
    uint64_t tag;     /* ADOPT, ADOPTED: the main thread's mark */
    bool ok;          /* ADOPTED */
    const char *why;  /* ADOPTED: why not (static text) */
    size_t busy_left; /* COLLECTED (final): connections still busy at the deadline, left here */
    size_t stayed;    /* COLLECTED (final): open connections left here (busy, TLS), to be drained */
    /* COLLECTED: what the records carry, for the log: output not yet written, replays not yet
     * read, password checks to submit again, input cut in the middle (a frame, a line, a
     * request) */
    uint64_t out_bytes, replays, logins, partial;
};

/* A zeroed mail for op. */
struct handover_mail *handover_mail_new(enum handover_op op);
/* Frees m and what it owns (an ADOPT's socket is closed). */
void handover_mail_free(struct handover_mail *m);

/* A MAIL_HANDOVER mail arrived at worker w. */
void handover_worker_mail(struct worker *w, struct handover_mail *m);
/* Each turn of w's loop, before it sleeps: what waits for busy connections. */
void handover_worker_tick(struct worker *w);
/* Frees w's handover state (at worker teardown). */
void handover_worker_destroy(struct worker *w);

#endif
