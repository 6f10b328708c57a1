/*
 * stream_input.h: an .sqkv file read from stdin through the library's streaming decoder, so that a
 * pipe of any length is checked (and decoded) section by section without holding the file in memory.
 */
#ifndef SQKV_CLI_STREAM_INPUT_H
#define SQKV_CLI_STREAM_INPUT_H

#include "sqkv.h"
#include "tools/sqkv/cli_common.h"

/* Pushes all of stdin into a decoder created with output_dtype (0 = verify only) and callbacks, then
 * finishes it. status is filled in. Prints any error ("(stdin): SQKV_ERR_...: ...", naming the section
 * and what was missing for a cut-off stream) and returns its exit code; EXIT_OK when the whole file
 * arrived and verified. When a callback returned nonzero, the callback is expected to have printed
 * its own error; its exit code is taken from *callback_rc when that is nonzero. */
int stream_stdin(sqkv_dtype output_dtype, const sqkv_stream_callbacks *callbacks, const int *callback_rc,
                 sqkv_stream_status *status);

#endif
