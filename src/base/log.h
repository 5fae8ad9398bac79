/*
 * log: one logfmt line per event on stderr:
 *   ts=2026-11-24T18:20:00.123Z level=info msg=listening transport=http addr=0.0.0.0:9999
 * Safe from any thread: each line is formatted on the stack and written with one write(2).
 */
#ifndef PARLEY_LOG_H
#define PARLEY_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_level(enum log_level level);

/* Returns 0 and sets *out for "debug", "info", "warn" or "error"; -1 otherwise. */
int log_parse_level(const char *name, enum log_level *out);

bool log_enabled(enum log_level level);

/* Writes "ts=... level=... " followed by the formatted fields, e.g. "msg=ready workers=%d". */
void log_write(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Writes s[0..n) as a logfmt value into out (size outsz, always NUL-terminated):
 * bare when it is a plain word, otherwise in double quotes with " \ and control
 * bytes escaped. Returns out, so it can be used inline as a %s argument.
 */
const char *log_quote(char *out, size_t outsz, const char *s, size_t n);

#define LOG_AT(level, ...)                                                                         \
    do {                                                                                           \
        if (log_enabled(level))                                                                    \
            log_write(level, __VA_ARGS__);                                                         \
    } while (0)
#define log_debug(...) LOG_AT(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) LOG_AT(LOG_INFO, __VA_ARGS__)
#define log_warn(...) LOG_AT(LOG_WARN, __VA_ARGS__)
#define log_error(...) LOG_AT(LOG_ERROR, __VA_ARGS__)

#endif
