/* tls: OpenSSL contexts for the TLS ports, their reload, and non-blocking TLS I/O. */
#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "log.h"
#include "metrics.h"

/* A certificate or key file larger than this is refused: PEM chains are a few KB. */
#define TLS_MAX_FILE (1u << 20)

/* TLS 1.2: forward secrecy (ECDHE) and AEAD only. TLS 1.3 suites are all AEAD. */
static const char tls12_ciphers[] = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
static const char tls13_suites[] =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
static const char groups[] = "X25519:P-256:P-384";

static pthread_mutex_t ctx_lock = PTHREAD_MUTEX_INITIALIZER;
static SSL_CTX *current[TLS_PORTS]; /* guarded by ctx_lock; each holds one reference */
static char *cert_file, *key_file;

static atomic_uint_fast64_t results[TLS_RESULTS];
static atomic_size_t open_count;

static _Thread_local char last_reason[160];

void tls_count(enum tls_result r)
{
    atomic_fetch_add_explicit(&results[r], 1, memory_order_relaxed);
}

uint64_t tls_counted(enum tls_result r)
{
    return atomic_load_explicit(&results[r], memory_order_relaxed);
}

size_t tls_open_count(void)
{
    return atomic_load_explicit(&open_count, memory_order_relaxed);
}

void tls_metrics(struct metrics_out *o)
{
    metrics_put(o,
                "# HELP parley_tls_connections Open TLS connections, handshaking or not.\n"
                "# TYPE parley_tls_connections gauge\nparley_tls_connections %zu\n",
                tls_open_count());
    static const char *const tls_results[] = {"ok", "failed", "timeout", "not_tls"};
    metrics_put(o, "# HELP parley_tls_handshakes_total TLS handshakes by result: ok, failed "
                   "(protocol error, alert or the peer left), timeout, not_tls (plain bytes on a "
                   "TLS port).\n# TYPE parley_tls_handshakes_total counter\n");
    for (int r = 0; r < TLS_RESULTS; r++)
        metrics_put(o, "parley_tls_handshakes_total{result=\"%s\"} %llu\n", tls_results[r],
                    (unsigned long long)tls_counted((enum tls_result)r));
}

const char *tls_reason(void)
{
    return last_reason;
}

/* Fills `out` with "what: OpenSSL's reason" (the last error queued), and empties the queue. */
static void describe(char *out, size_t outsz, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void describe(char *out, size_t outsz, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, outsz, fmt, ap);
    va_end(ap);
    unsigned long e = ERR_peek_last_error();
    if (e && n >= 0 && (size_t)n < outsz) {
        const char *why = ERR_reason_error_string(e);
        snprintf(out + n, outsz - (size_t)n, ": %s", why ? why : "unknown OpenSSL error");
    }
    ERR_clear_error();
}

/* --- loading the certificate and key --- */

/* Reads a regular file of at most TLS_MAX_FILE bytes. Returns a buffer to free, or NULL. */
static char *read_file(const char *path, size_t *len, char *err, size_t errsz)
{
    /* O_NONBLOCK: a FIFO given by mistake must not hang the process at start or reload. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errsz, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    char *buf = NULL;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errsz, "%s is not a regular file", path);
        goto fail;
    }
    if (st.st_size > (off_t)TLS_MAX_FILE) {
        snprintf(err, errsz, "%s is larger than %u bytes", path, TLS_MAX_FILE);
        goto fail;
    }
    buf = xmalloc((size_t)st.st_size + 1);
    size_t have = 0;
    for (;;) {
        ssize_t r = read(fd, buf + have, (size_t)st.st_size + 1 - have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(err, errsz, "cannot read %s: %s", path, strerror(errno));
            goto fail;
        }
        if (r == 0)
            break;
        have += (size_t)r;
        if (have > (size_t)st.st_size) {
            snprintf(err, errsz, "%s grew while it was read", path);
            goto fail;
        }
    }
    close(fd);
    *len = have;
    return buf;
fail:
    free(buf);
    close(fd);
    return NULL;
}

/* Never asks for a passphrase (there is nobody to type it): an encrypted key fails to load. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return 0;
}

struct material {
    X509 *leaf;
    STACK_OF(X509) * chain;
    EVP_PKEY *key;
};

static void material_free(struct material *m)
{
    X509_free(m->leaf);
    sk_X509_pop_free(m->chain, X509_free);
    EVP_PKEY_free(m->key);
    memset(m, 0, sizeof *m);
}

/* Parses the certificate (and chain) file and the key file. Returns 0 or -1 with err set. */
static int load_material(const char *cert_path, const char *key_path, struct material *m, char *err,
                         size_t errsz)
{
    memset(m, 0, sizeof *m);
    size_t len;
    char *text = read_file(cert_path, &len, err, errsz);
    if (!text)
        return -1;
    ERR_clear_error();
    BIO *bio = BIO_new_mem_buf(text, (int)len);
    m->leaf = bio ? PEM_read_bio_X509_AUX(bio, NULL, no_passphrase, NULL) : NULL;
    if (!m->leaf) {
        describe(err, errsz, "no PEM certificate in %s", cert_path);
        goto fail;
    }
    m->chain = sk_X509_new_null();
    X509 *x;
    while ((x = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL)) != NULL) {
        if (!m->chain || !sk_X509_push(m->chain, x)) {
            X509_free(x);
            describe(err, errsz, "out of memory reading %s", cert_path);
            goto fail;
        }
    }
    /* The loop ends at the end of the file (no start line) or at a damaged certificate. */
    unsigned long e = ERR_peek_last_error();
    if (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
        describe(err, errsz, "a damaged certificate in the chain of %s", cert_path);
        goto fail;
    }
    ERR_clear_error();
    BIO_free(bio);
    free(text);
    bio = NULL;
    text = read_file(key_path, &len, err, errsz);
    if (!text)
        goto fail;
    bio = BIO_new_mem_buf(text, (int)len);
    m->key = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
    if (!m->key) {
        describe(err, errsz, "no usable private key in %s (PEM, not encrypted)", key_path);
        goto fail;
    }
    BIO_free(bio);
    OPENSSL_cleanse(text, len);
    free(text);
    return 0;
fail:
    BIO_free(bio);
    if (text)
        OPENSSL_cleanse(text, len);
    free(text);
    material_free(m);
    return -1;
}

/* ALPN on the HTTP port: http/1.1 or nothing. A client that offers ALPN without http/1.1
 * gets the fatal no_application_protocol alert rather than a protocol it did not ask for. */
static int select_alpn(SSL *s, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)s, (void)arg;
    for (unsigned i = 0; i < inlen;) {
        unsigned n = in[i];
        if (n == 0 || n > inlen - i - 1)
            break;
        if (n == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) {
            *out = in + i + 1;
            *outlen = 8;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + n;
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* A context with the policy of tls.h and the given certificate and key. NULL with err set. */
static SSL_CTX *make_ctx(const struct material *m, bool alpn, char *err, size_t errsz)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        describe(err, errsz, "cannot make a TLS context");
        return NULL;
    }
    /* Level 2: RSA and DH keys of at least 2048 bits, ECC of at least 224, no SHA-1 signatures. */
    SSL_CTX_set_security_level(ctx, 2);
    /* Server preference keeps AES-GCM first, except for a client that lists ChaCha20 first
     * (one without AES hardware, which runs ChaCha20 faster): it gets ChaCha20. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_PRIORITIZE_CHACHA |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Resumption by stateless tickets only: a server-side session cache would keep memory
     * for every client that ever connected. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_cipher_list(ctx, tls12_ciphers) ||
        !SSL_CTX_set_ciphersuites(ctx, tls13_suites) || !SSL_CTX_set1_groups_list(ctx, groups)) {
        describe(err, errsz, "cannot set the TLS versions, ciphers or groups");
        goto fail;
    }
    if (!SSL_CTX_use_certificate(ctx, m->leaf)) {
        describe(err, errsz, "the certificate cannot be used");
        goto fail;
    }
    if (!SSL_CTX_set1_chain(ctx, m->chain)) {
        describe(err, errsz, "the certificate chain cannot be used");
        goto fail;
    }
    if (!SSL_CTX_use_PrivateKey(ctx, m->key) || !SSL_CTX_check_private_key(ctx)) {
        describe(err, errsz, "the private key does not match the certificate");
        goto fail;
    }
    if (alpn)
        SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* One line saying which certificate is now served, and a warning if it has expired. */
static void log_certificate(const char *what, const struct material *m)
{
    char subject[256];
    X509_NAME_oneline(X509_get_subject_name(m->leaf), subject, sizeof subject);
    char q[300], until[32] = "unknown";
    struct tm tm;
    if (ASN1_TIME_to_tm(X509_get0_notAfter(m->leaf), &tm))
        strftime(until, sizeof until, "%Y-%m-%dT%H:%M:%SZ", &tm);
    log_info("msg=%s subject=%s not_after=%s chain=%d", what,
             log_quote(q, sizeof q, subject, strlen(subject)), until, sk_X509_num(m->chain));
    if (X509_cmp_current_time(X509_get0_notAfter(m->leaf)) < 0)
        log_warn("msg=tls_certificate_expired not_after=%s", until);
}

/* Builds both contexts from the files. Returns 0 with fresh[] set, or -1 with err set. */
static int build(SSL_CTX *fresh[TLS_PORTS], const char *what, char *err, size_t errsz)
{
    struct material m;
    if (load_material(cert_file, key_file, &m, err, errsz) < 0)
        return -1;
    fresh[TLS_PORT_HTTP] = make_ctx(&m, true, err, errsz);
    fresh[TLS_PORT_LINE] = fresh[TLS_PORT_HTTP] ? make_ctx(&m, false, err, errsz) : NULL;
    if (!fresh[TLS_PORT_LINE]) {
        SSL_CTX_free(fresh[TLS_PORT_HTTP]);
        material_free(&m);
        return -1;
    }
    log_certificate(what, &m);
    material_free(&m);
    return 0;
}

int tls_setup(const char *cert_path, const char *key_path, char *err, size_t errsz)
{
    cert_file = xstrdup(cert_path);
    key_file = xstrdup(key_path);
    SSL_CTX *fresh[TLS_PORTS];
    if (build(fresh, "tls_certificate", err, errsz) < 0) {
        tls_teardown();
        return -1;
    }
    pthread_mutex_lock(&ctx_lock);
    memcpy(current, fresh, sizeof current);
    pthread_mutex_unlock(&ctx_lock);
    return 0;
}

bool tls_enabled(void)
{
    pthread_mutex_lock(&ctx_lock);
    bool on = current[TLS_PORT_HTTP] != NULL;
    pthread_mutex_unlock(&ctx_lock);
    return on;
}

int tls_reload(char *err, size_t errsz)
{
    if (!cert_file) {
        snprintf(err, errsz, "TLS is not configured");
        return -1;
    }
    SSL_CTX *fresh[TLS_PORTS], *old[TLS_PORTS];
    if (build(fresh, "tls_certificate", err, errsz) < 0)
        return -1;
    pthread_mutex_lock(&ctx_lock);
    memcpy(old, current, sizeof old);
    memcpy(current, fresh, sizeof current);
    pthread_mutex_unlock(&ctx_lock);
    /* Connections made with the old contexts hold references of their own. */
    for (int i = 0; i < TLS_PORTS; i++)
        SSL_CTX_free(old[i]);
    return 0;
}

void tls_teardown(void)
{
    pthread_mutex_lock(&ctx_lock);
    for (int i = 0; i < TLS_PORTS; i++) {
        SSL_CTX_free(current[i]);
        current[i] = NULL;
    }
    pthread_mutex_unlock(&ctx_lock);
    free(cert_file);
    free(key_file);
    cert_file = key_file = NULL;
}

/* --- one connection --- */

struct ssl_st *tls_new(int fd, enum tls_port port)
{
    pthread_mutex_lock(&ctx_lock);
    SSL_CTX *ctx = current[port];
    if (ctx)
        SSL_CTX_up_ref(ctx);
    pthread_mutex_unlock(&ctx_lock);
    if (!ctx)
        return NULL;
    /* SSL_new, the costly part, runs outside the lock on a reference of our own. */
    SSL *s = SSL_new(ctx);
    SSL_CTX_free(ctx);
    if (s && !SSL_set_fd(s, fd)) {
        SSL_free(s);
        s = NULL;
    }
    if (!s) {
        ERR_clear_error();
        return NULL;
    }
    SSL_set_accept_state(s);
    atomic_fetch_add_explicit(&open_count, 1, memory_order_relaxed);
    return s;
}

void tls_free(struct ssl_st *s)
{
    if (!s)
        return;
    SSL_free(s);
    atomic_fetch_sub_explicit(&open_count, 1, memory_order_relaxed);
}

void tls_describe(const struct ssl_st *s, char *out, size_t outsz)
{
    const unsigned char *alpn = NULL;
    unsigned alpn_len = 0;
    SSL_get0_alpn_selected(s, &alpn, &alpn_len);
    snprintf(out, outsz, "version=%s cipher=%s alpn=%.*s", SSL_get_version(s),
             SSL_CIPHER_get_name(SSL_get_current_cipher(s)), alpn_len ? (int)alpn_len : 4,
             alpn_len ? (const char *)alpn : "none");
}

bool tls_before_handshake(const struct ssl_st *s)
{
    return SSL_in_before(s);
}

bool tls_has_pending(const struct ssl_st *s)
{
    return SSL_has_pending(s);
}

bool tls_peer_closed(const struct ssl_st *s)
{
    return (SSL_get_shutdown(s) & SSL_RECEIVED_SHUTDOWN) != 0;
}

/* Maps a failed call's SSL_get_error to a TLS_IO_* value, noting the reason of a failure. */
static int io_result(SSL *s, int r)
{
    int e = SSL_get_error(s, r);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        return TLS_IO_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return TLS_IO_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        return TLS_IO_CLOSED;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0 && errno == 0)
            return TLS_IO_CLOSED; /* EOF without close_notify */
        if (ERR_peek_error() == 0) {
            snprintf(last_reason, sizeof last_reason, "%s", strerror(errno));
            return TLS_IO_ERROR;
        }
        break; /* OpenSSL queued the reason */
    default:
        break;
    }
    describe(last_reason, sizeof last_reason, "%s",
             e == SSL_ERROR_SSL ? "protocol error" : "I/O error");
    return TLS_IO_ERROR;
}

int tls_handshake(struct ssl_st *s)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(s);
    if (r == 1) {
        tls_count(TLS_RESULT_OK);
        return 1;
    }
    int rc = io_result(s, r);
    if (rc == TLS_IO_CLOSED) {
        snprintf(last_reason, sizeof last_reason, "the peer closed the connection");
        rc = TLS_IO_ERROR;
    }
    if (rc == TLS_IO_ERROR)
        tls_count(TLS_RESULT_FAILED);
    return rc;
}

ssize_t tls_read(struct ssl_st *s, void *buf, size_t n)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_read(s, buf, n > INT_MAX ? INT_MAX : (int)n);
    return r > 0 ? r : io_result(s, r);
}

ssize_t tls_write(struct ssl_st *s, const void *buf, size_t n)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_write(s, buf, n > INT_MAX ? INT_MAX : (int)n);
    if (r > 0)
        return r;
    int rc = io_result(s, r);
    return rc == TLS_IO_CLOSED ? TLS_IO_ERROR : rc;
}

int tls_shutdown(struct ssl_st *s)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_shutdown(s);
    int rc = r >= 0 ? 0 : io_result(s, r);
    if (rc == TLS_IO_WANT_READ)
        rc = 0; /* ours is sent; we do not wait for theirs */
    if (rc == 0)
        SSL_free_buffers(s); /* the alert's 17 KB record buffer: kept for the linger otherwise */
    return rc == 0 || rc == TLS_IO_WANT_WRITE ? rc : TLS_IO_ERROR;
}
