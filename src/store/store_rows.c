/* store_rows: checks and repairs of rows read back, shared by the store backends. */
#include "store_rows.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "log.h"
#include "text.h"

bool store_valid_room(const char *name, size_t n)
{
    char folded[TEXT_NAME_MAX + 1], a[TEXT_NAME_MAX + 1], b[TEXT_NAME_MAX + 1];
    if (!name)
        return false;
    if (text_fold_room(name, n, folded))
        return strlen(folded) == n && memcmp(folded, name, n) == 0;
    return text_parse_dm_room(name, n, a, b);
}

uint8_t store_type_from(const char *name)
{
    for (int t = 0; name && t < STORE_EV_TYPES; t++)
        if (strcmp(name, store_event_type_name((enum store_event_type)t)) == 0)
            return (uint8_t)t;
    return STORE_EV_TYPES;
}

/* True when s is not text a client may be shown (not UTF-8, or a control character). */
static bool unshowable(const char *s)
{
    size_t n = strlen(s);
    return text_needs_repair(s, n) || text_has_control(s, n);
}

char *store_repair_row(struct store_msg *m, size_t from_len, size_t cid_len)
{
    /* Names, reasons and emoji reach JSON and terminals too: a damaged one is shown as "?" or
     * left out. */
    if (m->user && !text_valid_user(m->user, strlen(m->user)))
        m->user = "?";
    if (m->target_from && !text_valid_user(m->target_from, strlen(m->target_from)))
        m->target_from = "?";
    if (m->detail && unshowable(m->detail))
        m->detail = NULL;
    if (m->mentions && (!*m->mentions || text_needs_repair(m->mentions, strlen(m->mentions))))
        m->mentions = NULL;
    if (m->emoji && unshowable(m->emoji))
        m->emoji = NULL;
    bool bad_from = !text_valid_user(m->from, from_len);
    bool bad_text = text_needs_repair(m->text, m->text_len);
    bool bad_cid = m->cid && (cid_len < 1 || cid_len > 64 || text_needs_repair(m->cid, cid_len) ||
                              text_has_control(m->cid, cid_len));
    if (!bad_from && !bad_text && !bad_cid)
        return NULL;
    char room[128];
    log_warn("msg=store_damaged_row table=events room=%s seq=%llu error=\"repaired before "
             "sending:%s%s%s\"",
             log_quote(room, sizeof room, m->room, strlen(m->room)), (unsigned long long)m->seq,
             bad_from ? " sender" : "", bad_text ? " text" : "", bad_cid ? " cid" : "");
    if (bad_from)
        m->from = "?";
    if (bad_cid)
        m->cid = NULL;
    if (!bad_text)
        return NULL;
    char *text = xmalloc(3 * m->text_len + 1);
    m->text_len = text_repair(m->text, m->text_len, text);
    text[m->text_len] = '\0';
    m->text = text;
    return text;
}
