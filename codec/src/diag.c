/* diag.c: see diag.h. */
#include "diag.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

sqkv_error sqkv_diag_fail(sqkv_diag *d, sqkv_error err, const char *fmt, ...) {
    if (d) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->text, sizeof d->text, fmt, ap);
        va_end(ap);
    }
    return err;
}

void sqkv_diag_prefix(sqkv_diag *d, const char *fmt, ...) {
    if (!d) return;
    char message[sizeof d->text];
    memcpy(message, d->text, sizeof message);
    message[sizeof message - 1] = '\0';
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(d->text, sizeof d->text, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof d->text) snprintf(d->text + n, sizeof d->text - (size_t)n, "%s", message);
}
