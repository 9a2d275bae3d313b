/*
 * nd_textscan.h — finds the lines of a big text that hold any of a set of plain needles, in one pass. Triage uses
 * it to keep only the lines around errors of a log of hundreds of megabytes before its rules read them.
 */
#ifndef ND_TEXTSCAN_H
#define ND_TEXTSCAN_H

#include "nd.h"

/* Finds every line of text[0..len) that contains at least one of the n needles (plain bytes, case-sensitive, empty
 * needles ignored). On success returns the number of such lines (>= 0) and sets *starts to a malloc'ed array of
 * their start offsets, ascending and unique (free() it; NULL when there are none). Fails with -EINVAL (more than
 * 256 needles or one longer than 255 bytes) or -ENOMEM, with a message in err. A line ends at '\n'. */
int nd_text_lines_with(const char *text, size_t len, const char *const *needles, size_t n, size_t **starts,
                       nd_err *err);

#endif
