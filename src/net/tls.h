/*
 * tls: the server's TLS contexts (OpenSSL), built from --tls-cert/--tls-key
 * and rebuilt on SIGHUP, and the few calls conn.c makes on one connection's
 * TLS state. No other file includes OpenSSL's TLS headers.
 *
 * DESIGN: there are two contexts built from the same certificate and key,
 * one per kind of port: the HTTP port selects ALPN http/1.1 (and refuses a
 * client that offers only other protocols); the line port negotiates no ALPN.
 * The current pair sits behind a mutex. A worker takes a reference to a
 * context at accept (tls_new), so a reload swaps the pair and drops the
 * process's reference while connections made before keep theirs: nothing is
 * dropped, and an old context is freed with its last connection.
 * TLS 1.2 and 1.3 only, ECDHE with AEAD ciphers only, no renegotiation, no
 * compression. Record buffers are released whenever they are empty, so an
 * idle connection holds its SSL object and keys, not 2 x 17 KB of buffers.
 * The I/O calls are non-blocking: they report "wants read" or "wants write"
 * and the caller waits for that epoll event.
 */
#ifndef PARLEY_TLS_H
#define PARLEY_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct ssl_st; /* OpenSSL's SSL */

enum tls_port { TLS_PORT_HTTP, TLS_PORT_LINE, TLS_PORTS };

/* How a handshake on a TLS port ended, for /metrics and /healthz. */
enum tls_result {
    TLS_RESULT_OK,      /* handshake done */
    TLS_RESULT_FAILED,  /* a protocol error, an alert, or the peer left mid-way */
    TLS_RESULT_TIMEOUT, /* not done within --tls-handshake-timeout */
    TLS_RESULT_NOT_TLS, /* the first byte was not a TLS handshake record */
    TLS_RESULTS,
};

/* What the I/O calls return instead of a byte count. */
#define TLS_IO_WANT_READ (-1)
#define TLS_IO_WANT_WRITE (-2)
#define TLS_IO_CLOSED (-3) /* the peer sent close_notify or closed the TCP connection */
#define TLS_IO_ERROR (-4)  /* the connection is unusable: tls_reason() says why */

/*
 * Builds the contexts from the PEM files cert_path (the certificate, then any
 * chain certificates) and key_path (an unencrypted private key; may be the same
 * file). Call once, before the workers start. Returns 0, or -1 with a sentence
 * saying why in err[0..errsz) (a missing file, no certificate, a key that does
 * not match, a key too weak).
 */
int tls_setup(const char *cert_path, const char *key_path, char *err, size_t errsz);

/* True once tls_setup succeeded. */
bool tls_enabled(void);

/*
 * Rebuilds both contexts from the same paths and makes them the ones new
 * connections get. Returns 0, or -1 with the reason in err; the old contexts
 * then stay in use. Safe from any thread while the workers run.
 */
int tls_reload(char *err, size_t errsz);

/* Drops the process's references to the contexts (at exit, after the workers stopped). */
void tls_teardown(void);

/*
 * A new server-side TLS state for the accepted socket fd on a port of that
 * kind, from the current context. Returns it (freed with tls_free), or NULL.
 */
struct ssl_st *tls_new(int fd, enum tls_port port);
void tls_free(struct ssl_st *s);

/* True until the handshake has started (nothing was read from the socket yet). */
bool tls_before_handshake(const struct ssl_st *s);

/* Advances the handshake. Returns 1 when it is done, TLS_IO_WANT_*, or TLS_IO_ERROR/CLOSED. */
int tls_handshake(struct ssl_st *s);

/* Decrypts into buf[0..n). Returns the bytes (> 0), or a TLS_IO_* value. */
ssize_t tls_read(struct ssl_st *s, void *buf, size_t n);

/*
 * Encrypts and sends at most one record of buf[0..n). Returns the bytes taken
 * (> 0) or a TLS_IO_* value. After TLS_IO_WANT_*, the next call must offer at
 * least the same bytes again (they may have moved in memory).
 */
ssize_t tls_write(struct ssl_st *s, const void *buf, size_t n);

/* Sends close_notify. Returns 0 once sent, TLS_IO_WANT_WRITE (call again), or TLS_IO_ERROR. */
int tls_shutdown(struct ssl_st *s);

/* True if decrypted bytes (or a whole record) wait inside OpenSSL: no epoll event will come. */
bool tls_has_pending(const struct ssl_st *s);

/* True once the peer's close_notify (or its end of the TCP stream) has been read. */
bool tls_peer_closed(const struct ssl_st *s);

/* Writes "version=TLSv1.3 cipher=... alpn=..." about a finished handshake, for debug logs. */
void tls_describe(const struct ssl_st *s, char *out, size_t outsz);

/* Why the last call on this thread failed, for logs ("unsupported protocol", ...). */
const char *tls_reason(void);

void tls_count(enum tls_result r);
uint64_t tls_counted(enum tls_result r);
/* TLS connections open now (handshaking or not). */
size_t tls_open_count(void);
/* Both as lines of /metrics (METRICS_PART_TLS). */
struct metrics_out;
void tls_metrics(struct metrics_out *o);

#endif
