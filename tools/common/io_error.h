/*
 * io_error.h: how the tools' data-I/O code reports a failure: a class (which is also the CLI exit code)
 * and one specific sentence. Parsers of untrusted files fill it instead of printing, so the caller
 * decides where the message goes and prefixes the file name.
 */
#ifndef SQKV_TOOLS_IO_ERROR_H
#define SQKV_TOOLS_IO_ERROR_H

typedef enum sqt_err_class {
    SQT_OK = 0,
    SQT_BAD_DATA = 1,  /* the input breaks its format's rules or our limits */
    SQT_USAGE = 2,     /* the request makes no sense for this input (e.g. bf16 into .npy) */
    SQT_SYSTEM = 3     /* open/read/write/mmap failed, or out of memory */
} sqt_err_class;

typedef struct sqt_error {
    sqt_err_class cls;
    char message[512];
} sqt_error;

void sqt_error_clear(sqt_error *e);

#if defined(__GNUC__) || defined(__clang__)
#define SQT_PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define SQT_PRINTF_LIKE(f, a)
#endif

/* Sets the class and message; returns cls so that `return sqt_fail(...)` reads naturally. The
 * first failure wins: later calls do not overwrite a message that is already set. */
int sqt_fail(sqt_error *e, sqt_err_class cls, const char *fmt, ...) SQT_PRINTF_LIKE(3, 4);

#endif
