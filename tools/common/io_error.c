/* io_error.c: see io_error.h. */
#include "tools/common/io_error.h"

#include <stdarg.h>
#include <stdio.h>

void sqt_error_clear(sqt_error *e) {
    e->cls = SQT_OK;
    e->message[0] = '\0';
}

int sqt_fail(sqt_error *e, sqt_err_class cls, const char *fmt, ...) {
    if (e == NULL) return (int)cls;
    if (e->cls != SQT_OK) return (int)e->cls;
    e->cls = cls;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return (int)cls;
}
