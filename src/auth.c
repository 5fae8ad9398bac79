/* auth: the password thread: CHAT_REGISTER ops get a hash, CHAT_LOGIN_PASSWORD ops a verdict. */
#include "auth.h"

#include <sodium.h>

#include "chat.h"
#include "log.h"

static bool cheapest;

static void on_mail(struct service *s, struct mail *m)
{
    (void)s;
    struct chat_op *op = (struct chat_op *)m;
    if (op->kind == CHAT_REGISTER) {
        unsigned long long ops =
            cheapest ? crypto_pwhash_OPSLIMIT_MIN : crypto_pwhash_OPSLIMIT_INTERACTIVE;
        size_t mem = cheapest ? crypto_pwhash_MEMLIMIT_MIN : crypto_pwhash_MEMLIMIT_INTERACTIVE;
        if (crypto_pwhash_str(op->pwhash, op->password, op->password_len, ops, mem) != 0) {
            log_error("msg=password_hash_failed error=\"out of memory\"");
            chat_op_fail(op, PROTO_SERVER_BUSY, "the server cannot register accounts right now");
            chat_to_hub(op); /* the hub releases the name it reserved */
            return;
        }
        chat_to_store(op);
        return;
    }
    /* CHAT_LOGIN_PASSWORD: the store found the account and its hash. */
    if (crypto_pwhash_str_verify(op->pwhash, op->password, op->password_len) != 0) {
        chat_op_fail(op, PROTO_BAD_CREDENTIALS, "wrong name or password");
        chat_to_worker(op);
        return;
    }
    op->stage = 1;
    chat_to_store(op);
}

int auth_init(struct service *s, bool cost_min)
{
    cheapest = cost_min;
    if (sodium_init() < 0)
        return -1;
    return service_init(s, "auth", on_mail, NULL, NULL);
}
