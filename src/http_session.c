/* http_session: request routing and responses for the HTTP port. */
#include "http_session.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "http_parser.h"
#include "log.h"
#include "metrics.h"
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

/* --- embedded files: one immortal chunk each, shared by every response --- */

struct asset {
    struct chunk *body;
    char etag[24];
};

static struct asset *assets;
static pthread_once_t assets_once = PTHREAD_ONCE_INIT;

static void load_assets(void)
{
    assets = xcalloc(web_assets_count, sizeof *assets);
    for (size_t i = 0; i < web_assets_count; i++) {
        assets[i].body = chunk_from(web_assets[i].data, web_assets[i].len);
        uint64_t h = 14695981039346656037ull; /* FNV-1a: a cheap validator for If-None-Match */
        for (size_t j = 0; j < web_assets[i].len; j++)
            h = (h ^ web_assets[i].data[j]) * 1099511628211ull;
        snprintf(assets[i].etag, sizeof assets[i].etag, "\"%016llx\"", (unsigned long long)h);
    }
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
    char head[1024];
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

static void send_text(struct conn *c, const char *ctype, const char *text, size_t len,
                      bool keep_alive, bool head_only)
{
    struct response r = {
        .status = 200,
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
    char body[256];
    int n = snprintf(body, sizeof body,
                     "{\"status\":\"ok\",\"version\":\"%s\",\"connections\":%zu,"
                     "\"websocket\":%zu,\"telnet\":%zu,\"uptime_s\":%llu}\n",
                     PARLEY_VERSION,
                     conn_count(CONN_HTTP) + conn_count(CONN_WEBSOCKET) + conn_count(CONN_TELNET),
                     conn_count(CONN_WEBSOCKET), conn_count(CONN_TELNET),
                     (unsigned long long)((conn_now(c) - w->started_ms) / 1000));
    send_text(c, "application/json", body, (size_t)n, keep_alive, head_only);
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

static void serve_asset(struct conn *c, const struct http_request *req, int i, bool keep_alive,
                        bool head_only)
{
    pthread_once(&assets_once, load_assets);
    const struct asset *a = &assets[i];
    char extra[512];
    snprintf(extra, sizeof extra,
             "ETag: %s\r\nCache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n"
             "Referrer-Policy: no-referrer\r\n"
             "Content-Security-Policy: default-src 'self'; connect-src 'self'; "
             "img-src 'self' data:; frame-ancestors 'none'\r\n",
             a->etag);
    const struct http_header *inm = http_find_header(req, "If-None-Match");
    if (inm && inm->value_len == strlen(a->etag) &&
        memcmp(inm->value, a->etag, inm->value_len) == 0) {
        struct response r = {.status = 304,
                             .content_type = web_assets[i].content_type,
                             .extra_headers = extra,
                             .keep_alive = keep_alive,
                             .head_only = true};
        /* 304 carries no body; Content-Length 0 is harmless and keeps the framing plain. */
        send_response(c, &r);
        return;
    }
    struct response r = {
        .status = 200,
        .content_type = web_assets[i].content_type,
        .extra_headers = extra,
        .body = chunk_ref(a->body),
        .body_len = web_assets[i].len,
        .keep_alive = keep_alive,
        .head_only = head_only,
    };
    send_response(c, &r);
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
    const struct config *cfg = cfg_of(c);
    if (!ws_origin_allowed(req, cfg->allowed_origins, cfg->n_allowed_origins)) {
        const struct http_header *o = http_find_header(req, "Origin");
        char q[128];
        log_info("msg=origin_refused conn=%llu origin=%s", (unsigned long long)c->id,
                 log_quote(q, sizeof q, o ? o->value : "", o ? o->value_len : 0));
        send_status(c, 403, NULL, false, false);
        return;
    }
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
    ws_session_start(c, ep, deflate.on ? deflate.server_bits : 0);
}

static bool path_is(const char *path, size_t len, const char *want)
{
    return strlen(want) == len && memcmp(path, want, len) == 0;
}

static void handle_request(struct conn *c, const struct http_request *req)
{
    const struct config *cfg = cfg_of(c);
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
    if (http_find_header(req, "Transfer-Encoding") ||
        (cl && !(cl->value_len == 1 && cl->value[0] == '0')))
        keep_alive = false;

    bool get = http_method_is(req, "GET");
    bool head = http_method_is(req, "HEAD");
    static const char allow[] = "Allow: GET, HEAD\r\n";

    enum { ROUTE_NONE, ROUTE_WS, ROUTE_ECHO, ROUTE_HEALTHZ, ROUTE_METRICS, ROUTE_ASSET } route;
    int asset = -1;
    if (path_is(path, path_len, "/ws"))
        route = ROUTE_WS;
    else if (cfg->echo_endpoint && path_is(path, path_len, "/echo"))
        route = ROUTE_ECHO;
    else if (path_is(path, path_len, "/healthz"))
        route = ROUTE_HEALTHZ;
    else if (path_is(path, path_len, "/metrics"))
        route = ROUTE_METRICS;
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

static void on_shutdown(struct conn *c)
{
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
