/* http_session: request routing and responses for the HTTP port. */
#include "http_session.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "addr.h"
#include "alloc.h"
#include "http_parser.h"
#include "log.h"
#include "metrics.h"
#include "peers.h"
#include "tls.h"
#include "web_assets.h"
#include "worker.h"
#include "ws_extension.h"
#include "ws_handshake.h"
#include "ws_session.h"

struct response {
    int status;
    const char *content_type;
    const char *extra_headers; /* full header lines, each ending in \r\n */
    struct chunk *body;        /* reference owned by the response, or NULL */
    size_t body_len;
    bool keep_alive;
    bool head_only;
};

/* --- embedded files: one immortal chunk per variant each, shared by every response --- */

struct asset {
    struct chunk *body;
    struct chunk *gzip_body; /* NULL when the file has no gzip copy */
    char etag[32];
    char gzip_etag[32]; /* the identity ETag with "-gz": a validator of its own per RFC 9110 */
};

static struct asset *assets;
static pthread_once_t assets_once = PTHREAD_ONCE_INIT;

static void load_assets(void)
{
    assets = xcalloc(web_assets_count, sizeof *assets);
    for (size_t i = 0; i < web_assets_count; i++) {
        const struct web_asset *w = &web_assets[i];
        assets[i].body = chunk_from(w->data, w->len);
        uint64_t h = 14695981039346656037ull; /* FNV-1a: a cheap validator for If-None-Match */
        for (size_t j = 0; j < w->len; j++)
            h = (h ^ w->data[j]) * 1099511628211ull;
        snprintf(assets[i].etag, sizeof assets[i].etag, "\"%016llx\"", (unsigned long long)h);
        if (w->gzip) {
            assets[i].gzip_body = chunk_from(w->gzip, w->gzip_len);
            snprintf(assets[i].gzip_etag, sizeof assets[i].gzip_etag, "\"%016llx-gz\"",
                     (unsigned long long)h);
        }
    }
}

/* Returns true when the request's Accept-Encoding lines (one list) choose gzip. */
static bool wants_gzip(const struct http_request *req)
{
    struct http_codings codings;
    http_codings_init(&codings);
    bool named = false;
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct http_header *h = &req->headers[i];
        if (h->name_len == 15 && strncasecmp(h->name, "Accept-Encoding", 15) == 0) {
            http_codings_add(&codings, h->value, h->value_len);
            named = true;
        }
    }
    /* Without the header any coding would do (RFC 9110 12.5.3), but a client that says
     * nothing most likely cannot decode anything: it gets the plain bytes. */
    return named && http_codings_prefer_gzip(&codings);
}

/* Returns true when an If-None-Match line names `etag` (weak comparison) or is "*". */
static bool none_match_hits(const struct http_request *req, const char *etag)
{
    size_t etag_len = strlen(etag);
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct http_header *h = &req->headers[i];
        if (h->name_len != 13 || strncasecmp(h->name, "If-None-Match", 13) != 0)
            continue;
        size_t pos = 0, start, end;
        while (http_list_next(h->value, h->value_len, &pos, &start, &end)) {
            const char *v = h->value + start;
            if (end - start >= 2 && v[0] == 'W' && v[1] == '/')
                v += 2; /* weak comparison */
            size_t n = (size_t)(h->value + end - v);
            if ((n == 1 && v[0] == '*') || (n == etag_len && memcmp(v, etag, n) == 0))
                return true;
        }
    }
    return false;
}

static int find_asset(const char *path, size_t len)
{
    if (len == 1 && path[0] == '/') {
        path = "/index.html";
        len = strlen(path);
    }
    for (size_t i = 0; i < web_assets_count; i++)
        if (strlen(web_assets[i].path) == len && memcmp(web_assets[i].path, path, len) == 0)
            return (int)i;
    return -1;
}

/* --- responses --- */

static const char *reason_phrase(int status)
{
    switch (status) {
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 421:
        return "Misdirected Request";
    case 426:
        return "Upgrade Required";
    case 431:
        return "Request Header Fields Too Large";
    case 503:
        return "Service Unavailable";
    default:
        return "Error";
    }
}

static const struct config *cfg_of(struct conn *c)
{
    return ((struct worker *)c->set->owner)->cfg;
}

static void send_response(struct conn *c, struct response *r)
{
    if (c->http & CONN_HTTP_LAST)
        r->keep_alive = false;
    c->http |= CONN_HTTP_ANSWERED;
    char head[4608]; /* room for an asset's headers with the longest --peer-urls in its CSP */
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nServer: parley/%s\r\nContent-Type: %s\r\n"
                     "Content-Length: %zu\r\n%s%s\r\n",
                     r->status, reason_phrase(r->status), PARLEY_VERSION, r->content_type,
                     r->body_len, r->extra_headers ? r->extra_headers : "",
                     r->keep_alive ? "" : "Connection: close\r\n");
    conn_send_copy(c, head, (size_t)n < sizeof head ? (size_t)n : sizeof head - 1);
    if (r->body && !r->head_only)
        conn_send(c, r->body, 0, r->body_len);
    else
        chunk_unref(r->body);
    if (!r->keep_alive)
        conn_close_after_flush(c);
    else
        conn_set_timer(c, conn_now(c) + cfg_of(c)->http_idle_ms);
}

/* Answers with a short plain-text body. */
static void send_status(struct conn *c, int status, const char *extra, bool keep_alive,
                        bool head_only)
{
    char text[96];
    int n = snprintf(text, sizeof text, "%d %s\n", status, reason_phrase(status));
    struct response r = {
        .status = status,
        .content_type = "text/plain; charset=utf-8",
        .extra_headers = extra,
        .body = chunk_from(text, (size_t)n),
        .body_len = (size_t)n,
        .keep_alive = keep_alive,
        .head_only = head_only,
    };
    send_response(c, &r);
}

static void send_text(struct conn *c, int status, const char *ctype, const char *text, size_t len,
                      bool keep_alive, bool head_only)
{
    struct response r = {
        .status = status,
        .content_type = ctype,
        .extra_headers = "Cache-Control: no-store\r\n",
        .body = chunk_from(text, len),
        .body_len = len,
        .keep_alive = keep_alive,
        .head_only = head_only,
    };
    send_response(c, &r);
}

static void serve_healthz(struct conn *c, bool keep_alive, bool head_only)
{
    struct worker *w = c->set->owner;
    /* A store that cannot take writes makes the server unhealthy: a load balancer or a
     * supervisor should stop sending it users and look at it. */
    const char *problem = metrics_store_problem();
    char status[160];
    if (problem)
        snprintf(status, sizeof status, "\"unhealthy\",\"problem\":\"%s\"", problem);
    else
        snprintf(status, sizeof status, "\"ok\"");
    char engines[400];
    metrics_health(engines, sizeof engines);
    char body[1100];
    struct metrics_upgrades up;
    metrics_get_upgrades(&up);
    uint64_t tls_failed = tls_counted(TLS_RESULT_FAILED) + tls_counted(TLS_RESULT_TIMEOUT) +
                          tls_counted(TLS_RESULT_NOT_TLS);
    int n = snprintf(body, sizeof body,
                     "{\"status\":%s,\"version\":\"%s\",\"connections\":%zu,"
                     "\"websocket\":%zu,\"telnet\":%zu,\"uptime_s\":%llu,\"tls\":%s,"
                     "\"tls_connections\":%zu,\"tls_handshakes\":%llu,"
                     "\"tls_handshake_failures\":%llu,\"pid\":%d,\"generation\":%llu,"
                     "\"upgrades\":%llu,\"upgrades_failed\":%llu,\"handed_over\":%llu,"
                     "\"drained\":%llu%s}\n",
                     status, PARLEY_VERSION,
                     conn_count(CONN_HTTP) + conn_count(CONN_WEBSOCKET) + conn_count(CONN_TELNET),
                     conn_count(CONN_WEBSOCKET), conn_count(CONN_TELNET),
                     (unsigned long long)((conn_now(c) - w->started_ms) / 1000),
                     w->cfg->tls_cert ? "true" : "false", tls_open_count(),
                     (unsigned long long)tls_counted(TLS_RESULT_OK), (unsigned long long)tls_failed,
                     (int)getpid(), (unsigned long long)up.generation, (unsigned long long)up.done,
                     (unsigned long long)up.failed, (unsigned long long)up.handed_over,
                     (unsigned long long)up.drained, engines);
    send_text(c, problem ? 503 : 200, "application/json", body, (size_t)n, keep_alive, head_only);
}

static void serve_metrics(struct conn *c, bool keep_alive, bool head_only)
{
    struct worker *w = c->set->owner;
    struct chunk *body = metrics_render((conn_now(c) - w->started_ms) / 1000);
    struct response r = {
        .status = 200,
        .content_type = "text/plain; version=0.0.4; charset=utf-8",
        .extra_headers = "Cache-Control: no-store\r\n",
        .body = body,
        .body_len = body->len,
        .keep_alive = keep_alive,
        .head_only = head_only,
    };
    send_response(c, &r);
}

/* GET /peers.json: the nodes' WebSocket URLs (--peer-urls), which the page tries in turn after
 * its own origin's; {"urls":[]} without the option. */
static void serve_peers(struct conn *c, bool keep_alive, bool head_only)
{
    const struct peer_urls *peers = &cfg_of(c)->peers;
    char body[PEER_URLS_MAX * (PEER_URL_MAX + 3) + 16];
    size_t n = (size_t)snprintf(body, sizeof body, "{\"urls\":[");
    for (size_t i = 0; i < peers->n; i++)
        n += (size_t)snprintf(body + n, sizeof body - n, "%s\"%s\"", i ? "," : "",
                              peers->urls[i]);
    n += (size_t)snprintf(body + n, sizeof body - n, "]}\n");
    send_text(c, 200, "application/json", body, n, keep_alive, head_only);
}

static void serve_asset(struct conn *c, const struct http_request *req, int i, bool keep_alive,
                        bool head_only)
{
    pthread_once(&assets_once, load_assets);
    const struct asset *a = &assets[i];
    bool gzip = a->gzip_body && wants_gzip(req);
    const char *etag = gzip ? a->gzip_etag : a->etag;
    /* The page may connect to the other nodes (--peer-urls) as well as its own. */
    const struct peer_urls *peers = &cfg_of(c)->peers;
    char connect[PEER_URLS_MAX * (PEER_URL_MAX + 1) + 1] = "";
    size_t used = 0;
    for (size_t k = 0; k < peers->n; k++)
        used += (size_t)snprintf(connect + used, sizeof connect - used, " %s", peers->urls[k]);
    char extra[640 + sizeof connect];
    snprintf(extra, sizeof extra,
             "ETag: %s\r\n%s%sCache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n"
             "Referrer-Policy: no-referrer\r\n"
             "Content-Security-Policy: default-src 'self'; connect-src 'self'%s; "
             "img-src 'self' data:; frame-ancestors 'none'\r\n",
             etag, gzip ? "Content-Encoding: gzip\r\n" : "",
             a->gzip_body ? "Vary: Accept-Encoding\r\n" : "", connect);
    struct response r = {
        .status = 200,
        .content_type = web_assets[i].content_type,
        .extra_headers = extra,
        .body_len = gzip ? web_assets[i].gzip_len : web_assets[i].len,
        .keep_alive = keep_alive,
        .head_only = head_only,
    };
    if (none_match_hits(req, etag)) {
        /* 304 carries no body; its Content-Length is the one a 200 would have (RFC 9110 8.6). */
        r.status = 304;
        r.head_only = true;
    } else {
        r.body = chunk_ref(gzip ? a->gzip_body : a->body);
    }
    send_response(c, &r);
}

/*
 * A WebSocket from a trusted proxy belongs to the client its X-Forwarded-For names (the
 * headers' entries read from the right, past the proxies): it is counted and limited under that
 * address from now on, and its logins are throttled by that client's network. Returns false after
 * answering 503 when that address is over its limit. Without a usable header the connection stays
 * the proxy's, uncounted.
 */
static bool adopt_forwarded_client(struct conn *c, const struct http_request *req)
{
    const struct config *cfg = cfg_of(c);
    char list[HTTP_MAX_HEAD];
    size_t n = 0;
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct http_header *h = &req->headers[i];
        if (h->name_len != 15 || strncasecmp(h->name, "X-Forwarded-For", 15) != 0 ||
            n + h->value_len + 1 > sizeof list)
            continue;
        if (n)
            list[n++] = ',';
        memcpy(list + n, h->value, h->value_len);
        n += h->value_len;
    }
    struct addr client;
    if (!addr_forwarded_client(list, n, cfg->trusted_proxies, cfg->n_trusted_proxies, &client)) {
        log_debug("msg=forwarded_for_missing conn=%llu", (unsigned long long)c->id);
        return true;
    }
    uint64_t key = addr_key(&client);
    if (cfg->max_conns_per_ip && !peers_acquire(key, cfg->max_conns_per_ip)) {
        char text[64];
        addr_format(&client, text, sizeof text);
        log_info("msg=conn_limit conn=%llu client=%s via=proxy", (unsigned long long)c->id, text);
        send_status(c, 503, NULL, false, false);
        return false;
    }
    c->peer_key = key;
    c->net_key = addr_net_key(&client);
    c->peer_counted = cfg->max_conns_per_ip != 0;
    c->via_proxy = false; /* its client is known now: a later request cannot change it */
    return true;
}

/* Answers a WebSocket upgrade request on endpoint ep. */
static void upgrade(struct conn *c, const struct http_request *req, enum ws_endpoint ep,
                    bool keep_alive)
{
    static const char needs_ws[] = "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n";
    char accept[WS_ACCEPT_LEN + 1];
    if (!http_method_is(req, "GET") || !ws_handshake_check(req, accept)) {
        send_status(c, 426, needs_ws, keep_alive, http_method_is(req, "HEAD"));
        return;
    }
    /* The bytes after the head are WebSocket frames: a body there is a smuggling attempt. */
    const struct http_header *cl = http_find_header(req, "Content-Length");
    if (cl && !(cl->value_len == 1 && cl->value[0] == '0')) {
        send_status(c, 400, NULL, false, false);
        return;
    }
    const struct config *cfg = cfg_of(c);
    int default_port = conn_is_tls(c) ? 443 : 80;
    if (!ws_origin_allowed_on(req, cfg->allowed_origins, cfg->n_allowed_origins, default_port) &&
        !ws_origin_allowed_on(req, (const char *const *)cfg->peers.origins, cfg->peers.n,
                              default_port)) {
        const struct http_header *o = http_find_header(req, "Origin");
        char q[128];
        log_info("msg=origin_refused conn=%llu origin=%s", (unsigned long long)c->id,
                 log_quote(q, sizeof q, o ? o->value : "", o ? o->value_len : 0));
        send_status(c, 403, NULL, false, false);
        return;
    }
    if (c->via_proxy && !adopt_forwarded_client(c, req))
        return;
    /* permessage-deflate when the client offers it in a form we accept (ws_extension.h). */
    struct ws_deflate_agreement deflate = {0};
    char ext[WS_EXTENSION_RESPONSE_MAX] = "";
    if (cfg->deflate && ws_extension_negotiate(req, &deflate))
        ws_extension_response(&deflate, ext);
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%s%s\r\n",
                     accept, deflate.on ? "Sec-WebSocket-Extensions: " : "", ext,
                     deflate.on ? "\r\n" : "");
    conn_send_copy(c, head, (size_t)n);
    bool last = c->http & CONN_HTTP_LAST;
    ws_session_start(c, ep, deflate.on ? deflate.server_bits : 0);
    if (last) /* this process has handed over: the client goes to the new one at once */
        ws_session_close(c, WS_CLOSE_RESTART, "service restart");
}

static bool path_is(const char *path, size_t len, const char *want)
{
    return strlen(want) == len && memcmp(path, want, len) == 0;
}

static bool is_number(const char *s, size_t n)
{
    if (n == 0 || n > 18)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/*
 * Refuses the shapes request smuggling is made of, where parley and a proxy in front of it could
 * disagree on where a request ends: more than one Content-Length, one that is not a plain
 * number, any Transfer-Encoding (parley reads no bodies, chunked or not), and the Host header
 * missing from an HTTP/1.1 request or given twice (RFC 9112 3.2). Returns false after answering
 * 400 and closing.
 */
static bool framing_ok(struct conn *c, const struct http_request *req)
{
    const struct http_header *cl = http_find_header(req, "Content-Length");
    size_t hosts = http_count_header(req, "Host");
    const char *why = NULL;
    if (http_count_header(req, "Content-Length") > 1)
        why = "content_length_repeated";
    else if (cl && !is_number(cl->value, cl->value_len))
        why = "content_length_invalid";
    else if (http_find_header(req, "Transfer-Encoding"))
        why = "transfer_encoding";
    else if (hosts > 1 || (hosts == 0 && req->version_minor == 1))
        why = "host_header";
    if (!why)
        return true;
    log_debug("msg=http_refused conn=%llu status=400 reason=%s", (unsigned long long)c->id, why);
    send_status(c, 400, NULL, false, false);
    return false;
}

static void handle_request(struct conn *c, const struct http_request *req)
{
    const struct config *cfg = cfg_of(c);
    if (!framing_ok(c, req))
        return;
    /* --public-host: a request for another name reached us by a DNS record someone else
     * controls (DNS rebinding): nothing here is for it. */
    if (!ws_host_allowed(req, cfg->public_hosts, cfg->n_public_hosts, conn_is_tls(c) ? 443 : 80)) {
        log_debug("msg=http_refused conn=%llu status=421", (unsigned long long)c->id);
        send_status(c, 421, NULL, false, false);
        return;
    }
    size_t path_len = 0;
    while (path_len < req->target_len && req->target[path_len] != '?' &&
           req->target[path_len] != '#')
        path_len++;
    const char *path = req->target;

    const struct http_header *conn_hdr = http_find_header(req, "Connection");
    bool keep_alive =
        req->version_minor == 1
            ? !(conn_hdr && http_has_token(conn_hdr->value, conn_hdr->value_len, "close"))
            : (conn_hdr && http_has_token(conn_hdr->value, conn_hdr->value_len, "keep-alive"));
    /* Bodies are never read: after one, the next request cannot be found, so close. */
    const struct http_header *cl = http_find_header(req, "Content-Length");
    if (cl && !(cl->value_len == 1 && cl->value[0] == '0'))
        keep_alive = false;

    bool get = http_method_is(req, "GET");
    bool head = http_method_is(req, "HEAD");
    static const char allow[] = "Allow: GET, HEAD\r\n";

    enum {
        ROUTE_NONE,
        ROUTE_WS,
        ROUTE_ECHO,
        ROUTE_HEALTHZ,
        ROUTE_METRICS,
        ROUTE_PEERS,
        ROUTE_ASSET
    } route;
    int asset = -1;
    if (path_is(path, path_len, "/ws"))
        route = ROUTE_WS;
    else if (cfg->echo_endpoint && path_is(path, path_len, "/echo"))
        route = ROUTE_ECHO;
    else if (path_is(path, path_len, "/healthz"))
        route = ROUTE_HEALTHZ;
    else if (path_is(path, path_len, "/metrics"))
        route = ROUTE_METRICS;
    else if (path_is(path, path_len, "/peers.json"))
        route = ROUTE_PEERS;
    else if ((asset = find_asset(path, path_len)) >= 0)
        route = ROUTE_ASSET;
    else
        route = ROUTE_NONE;

    if (route == ROUTE_NONE) {
        send_status(c, 404, NULL, keep_alive, head);
        return;
    }
    if (!get && !head) {
        send_status(c, 405, allow, false, false);
        return;
    }
    switch (route) {
    case ROUTE_WS:
        upgrade(c, req, WS_ENDPOINT_CHAT, keep_alive);
        break;
    case ROUTE_ECHO:
        upgrade(c, req, WS_ENDPOINT_ECHO, keep_alive);
        break;
    case ROUTE_HEALTHZ:
        serve_healthz(c, keep_alive, head);
        break;
    case ROUTE_METRICS:
        serve_metrics(c, keep_alive, head);
        break;
    case ROUTE_PEERS:
        serve_peers(c, keep_alive, head);
        break;
    case ROUTE_ASSET:
        serve_asset(c, req, asset, keep_alive, head);
        break;
    case ROUTE_NONE:
        break;
    }
}

static size_t on_input(struct conn *c, uint8_t *data, size_t len)
{
    struct http_request req;
    int n = http_parse_request((const char *)data, len, HTTP_MAX_HEAD, &req);
    if (n == HTTP_NEED_MORE)
        return 0;
    if (n == HTTP_BAD || n == HTTP_TOO_LARGE) {
        log_debug("msg=http_refused conn=%llu status=%d", (unsigned long long)c->id,
                  n == HTTP_BAD ? 400 : 431);
        send_status(c, n == HTTP_BAD ? 400 : 431, NULL, false, false);
        return len;
    }
    handle_request(c, &req);
    return (size_t)n;
}

/* The request-head and keep-alive deadline. */
static void on_timer(struct conn *c)
{
    if (c->in_len > 0)
        send_status(c, 408, NULL, false, false);
    else
        conn_close(c);
}

static void on_shutdown(struct conn *c, enum conn_goodbye why)
{
    /* Handing over: a connection whose request has not come yet, or is half read, gets its
     * answer and then the close; closing it now would leave that client without one (the new
     * process has the port). An idle keep-alive connection may be closed: clients send again on
     * a new connection when a reused one closes. */
    if (why == CONN_GOODBYE_RESTART && (!(c->http & CONN_HTTP_ANSWERED) || c->in_len > 0)) {
        c->http |= CONN_HTTP_LAST;
        return;
    }
    conn_close_after_flush(c);
}

static const struct conn_handler http_handler = {
    .on_input = on_input,
    .on_timer = on_timer,
    .on_shutdown = on_shutdown,
};

void http_session_start(struct conn *c)
{
    c->handler = &http_handler;
    conn_set_timer(c, conn_now(c) + cfg_of(c)->http_idle_ms);
}

bool http_session_owns(const struct conn *c)
{
    return c->handler == &http_handler;
}

int http_session_restore(struct conn *c, const struct handover_rec *rec, const char **why)
{
    (void)rec;
    (void)why;
    c->handler = &http_handler;
    return 0;
}
