/*
 * textscan.c — one pass over a text to find the lines that hold any of a few plain needles (nd_textscan.h). A table
 * of the needles' first bytes (each byte with the list of needles starting with it) lets the scan skip most bytes;
 * candidates are checked on their second byte, then confirmed with memcmp, and once a line matches the scan jumps
 * to its end with memchr.
 */
#include "nd_textscan.h"
#include "nd_buf.h"

#include <stdlib.h>
#include <string.h>

int nd_text_lines_with(const char *text, size_t len, const char *const *needles, size_t n, size_t **starts,
                       nd_err *err)
{
    *starts = NULL;
    if (n > 256)
        return nd_err_set(err, -EINVAL, "textscan: %zu needles (at most 256)", n);
    size_t lens[256];
    /* bucket[b] lists the needles starting with byte b: head[b] is its first index, next[k] chains them (-1 ends) */
    short head[256], next[256];
    memset(head, -1, sizeof head);
    for (size_t k = n; k-- > 0;) {
        lens[k] = needles[k] ? strlen(needles[k]) : 0;
        if (lens[k] > 255)
            return nd_err_set(err, -EINVAL, "textscan: needle %zu is %zu bytes long (at most 255)", k + 1, lens[k]);
        next[k] = -1;
        if (lens[k]) {
            unsigned char b = (unsigned char)needles[k][0];
            next[k] = head[b];
            head[b] = (short)k;
        }
    }
    size_t cap = 0, count = 0, line = 0;
    size_t *out = NULL;
    const unsigned char *t = (const unsigned char *)text;
    size_t i = 0;
    while (i < len) {
        unsigned char c = t[i];
        if (c == '\n') {
            line = ++i;
            continue;
        }
        if (head[c] < 0) {
            i++;
            continue;
        }
        int hit = 0;
        for (short k = head[c]; k >= 0 && !hit; k = next[k])
            hit = len - i >= lens[k] && (lens[k] == 1 || t[i + 1] == (unsigned char)needles[k][1]) &&
                  memcmp(t + i, needles[k], lens[k]) == 0;
        if (!hit) {
            i++;
            continue;
        }
        size_t *no = nd_grow_array(out, &cap, count + 1, sizeof *no);
        if (!no) {
            free(out);
            return nd_err_set(err, -ENOMEM, "textscan: out of memory after %zu lines", count);
        }
        out = no;
        out[count++] = line;
        const unsigned char *nl = memchr(t + i, '\n', len - i);
        if (!nl)
            break;
        i = (size_t)(nl - t) + 1;
        line = i;
    }
    *starts = out;
    return (int)(count > (size_t)0x7fffffff ? 0x7fffffff : count);
}
