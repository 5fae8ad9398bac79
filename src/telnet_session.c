/* telnet_session: the telnet port's greeting until the line protocol arrives. */
#include "telnet_session.h"

#include <stdio.h>
#include <string.h>

#include "worker.h"

static size_t on_input(struct conn *c, uint8_t *data, size_t len)
{
    const uint8_t *nl = memchr(data, '\n', len);
    if (!nl)
        return len > 4096 ? len : 0;
    static const char msg[] = "* Chat over telnet is not open yet on this server. Bye.\r\n";
    conn_send_copy(c, msg, sizeof msg - 1);
    conn_close_after_flush(c);
    return len;
}

static void on_shutdown(struct conn *c)
{
    static const char msg[] = "\r\n* The server is shutting down.\r\n";
    conn_send_copy(c, msg, sizeof msg - 1);
    conn_close_after_flush(c);
}

static void on_timer(struct conn *c)
{
    conn_close_after_flush(c);
}

static const struct conn_handler telnet_handler = {
    .on_input = on_input,
    .on_timer = on_timer,
    .on_shutdown = on_shutdown,
};

void telnet_session_start(struct conn *c)
{
    const struct worker *w = c->set->owner;
    char hello[160];
    int n = snprintf(hello, sizeof hello, "Welcome to parley on %s. Your name? ", w->cfg->node);
    c->handler = &telnet_handler;
    conn_send_copy(c, hello, (size_t)n < sizeof hello ? (size_t)n : sizeof hello - 1);
    conn_set_timer(c, conn_now(c) + 60000);
}
