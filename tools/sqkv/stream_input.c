/* stream_input.c: see stream_input.h. */
#define _POSIX_C_SOURCE 200809L
#include "tools/sqkv/stream_input.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

enum { CHUNK = 1 << 16 };

int stream_stdin(sqkv_dtype output_dtype, const sqkv_stream_callbacks *callbacks, const int *callback_rc,
                 sqkv_stream_status *status) {
    memset(status, 0, sizeof *status);
    sqkv_stream_decoder *d = NULL;
    sqkv_error e = sqkv_stream_decoder_create(NULL, 0, output_dtype, callbacks, &d);
    if (e) return cli_report("(stdin)", e, "");
    static unsigned char buf[CHUNK];
    int rc = EXIT_OK;
    for (;;) {
        ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            cli_error("(stdin): read failed: %s", strerror(errno));
            rc = EXIT_IO;
            break;
        }
        if (n == 0) break;
        /* After an error the decoder refuses more input; finish reports the error with its detail. */
        if (sqkv_stream_decoder_push(d, buf, (size_t)n) != SQKV_OK) break;
    }
    e = sqkv_stream_decoder_finish(d, status);
    if (rc == EXIT_OK && e != SQKV_OK) {
        if (e == SQKV_ERR_ABORTED && callback_rc && *callback_rc) rc = *callback_rc;
        else rc = cli_report("(stdin)", e, sqkv_stream_decoder_error_detail(d));
    }
    sqkv_stream_decoder_destroy(d);
    return rc;
}
