/*
 * errname.c — the one libuv function core/nd.c needs (uv_err_name, for nd_err_name), for the static enclave
 * programs, which do not link libuv: glibc's strerrorname_np gives the same symbolic names ("ECONNRESET").
 */
#include <string.h>

const char *uv_err_name(int err);

const char *uv_err_name(int err)
{
    const char *n = strerrorname_np(-err);
    return n ? n : "Unknown system error";
}
