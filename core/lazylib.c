/*
 * lazylib.c — libcurl and libarchive, loaded when first used instead of at start-up.
 *
 * Linked normally, the two pull 38 shared libraries (LDAP, Kerberos, GnuTLS, ICU, libxml2, …) into every start of
 * nitrodiag; mapping and relocating them was two thirds of a 20 ms `nitrodiag --version`, and nitrodiag starts once
 * per simulated nitro-cli call and many times a minute from scripts. Most commands use neither library. So ndcore
 * does not link them: each function the code calls is defined here with the library's own prototype (the headers
 * are included, so the compiler checks every signature), and forwards to the real one, found with dlopen/dlsym on
 * first call (SONAMEs libcurl.so.4 and libarchive.so.13: stable across all libcurl 7/8 and libarchive 3 releases).
 * When a library cannot be loaded, its functions fail the way the library reports failure (NULL handle,
 * CURLE_FAILED_INIT, ARCHIVE_FATAL with the dlopen message as the error string), so callers' existing error paths
 * say why. Calling a libcurl/libarchive function that is not listed here is a link error: add one line below.
 */
#define CURL_DISABLE_TYPECHECK 1
#include <archive.h>
#include <archive_entry.h>
#include <curl/curl.h>
#include <dlfcn.h>
#include "nd_lazylib.h"
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct lazylib {
    const char *soname;
    pthread_once_t once;
    void *handle;
    char error[256];
} lazylib;

static lazylib lib_curl = {"libcurl.so.4", PTHREAD_ONCE_INIT, NULL, ""};
static lazylib lib_archive = {"libarchive.so.13", PTHREAD_ONCE_INIT, NULL, ""};

static void open_curl(void)
{
    lib_curl.handle = dlopen(lib_curl.soname, RTLD_NOW | RTLD_LOCAL);
    if (!lib_curl.handle)
        snprintf(lib_curl.error, sizeof lib_curl.error, "cannot load libcurl: %s", dlerror());
}

static void open_archive(void)
{
    lib_archive.handle = dlopen(lib_archive.soname, RTLD_NOW | RTLD_LOCAL);
    if (!lib_archive.handle)
        snprintf(lib_archive.error, sizeof lib_archive.error, "cannot load libarchive: %s", dlerror());
}

const char *nd_lazylib_error(const char *lib)
{
    if (lib && !strcmp(lib, "curl"))
        return lib_curl.error;
    if (lib && !strcmp(lib, "archive"))
        return lib_archive.error;
    return "";
}

/* The address of name in lib, or NULL (lib->error says why). */
static void *lazy_sym(lazylib *lib, void (*open)(void), const char *name)
{
    pthread_once(&lib->once, open);
    if (!lib->handle)
        return NULL;
    void *p = dlsym(lib->handle, name);
    if (!p && !lib->error[0])
        snprintf(lib->error, sizeof lib->error, "%s has no %s", lib->soname, name);
    return p;
}

/* Defines `ret name params` forwarding `args` to the library's function (resolved once), `fail` when missing. */
#define LAZY(lib, ret, name, params, args, fail)                                                                       \
    ret name params                                                                                                    \
    {                                                                                                                  \
        typedef ret(*lz_fn_t) params;                                                                                  \
        static lz_fn_t lz_fp;                                                                                          \
        lz_fn_t lz_f = __atomic_load_n(&lz_fp, __ATOMIC_ACQUIRE);                                                      \
        if (!lz_f) {                                                                                                   \
            void *lz_p = lazy_sym(&lib_##lib, open_##lib, #name);                                                      \
            memcpy(&lz_f, &lz_p, sizeof lz_f);                                                                         \
            if (!lz_f)                                                                                                 \
                return fail;                                                                                           \
            __atomic_store_n(&lz_fp, lz_f, __ATOMIC_RELEASE);                                                          \
        }                                                                                                              \
        return lz_f args;                                                                                              \
    }
#define LAZY_VOID(lib, name, params, args)                                                                             \
    void name params                                                                                                   \
    {                                                                                                                  \
        typedef void(*lz_fn_t) params;                                                                                 \
        static lz_fn_t lz_fp;                                                                                          \
        lz_fn_t lz_f = __atomic_load_n(&lz_fp, __ATOMIC_ACQUIRE);                                                      \
        if (!lz_f) {                                                                                                   \
            void *lz_p = lazy_sym(&lib_##lib, open_##lib, #name);                                                      \
            memcpy(&lz_f, &lz_p, sizeof lz_f);                                                                         \
            if (!lz_f)                                                                                                 \
                return;                                                                                                \
            __atomic_store_n(&lz_fp, lz_f, __ATOMIC_RELEASE);                                                          \
        }                                                                                                              \
        lz_f args;                                                                                                     \
    }

/* ---- libcurl ---------------------------------------------------------------------------------------------------- */

LAZY(curl, CURLcode, curl_global_init, (long flags), (flags), CURLE_FAILED_INIT)
LAZY(curl, CURL *, curl_easy_init, (void), (), NULL)
LAZY_VOID(curl, curl_easy_cleanup, (CURL *h), (h))
LAZY_VOID(curl, curl_easy_reset, (CURL *h), (h))
LAZY(curl, struct curl_slist *, curl_slist_append, (struct curl_slist *l, const char *s), (l, s), NULL)
LAZY_VOID(curl, curl_slist_free_all, (struct curl_slist *l), (l))
LAZY(curl, CURLM *, curl_multi_init, (void), (), NULL)
LAZY(curl, CURLMcode, curl_multi_cleanup, (CURLM *m), (m), CURLM_INTERNAL_ERROR)
LAZY(curl, CURLMcode, curl_multi_add_handle, (CURLM *m, CURL *e), (m, e), CURLM_INTERNAL_ERROR)
LAZY(curl, CURLMcode, curl_multi_remove_handle, (CURLM *m, CURL *e), (m, e), CURLM_INTERNAL_ERROR)
LAZY(curl, CURLMcode, curl_multi_assign, (CURLM *m, curl_socket_t s, void *p), (m, s, p), CURLM_INTERNAL_ERROR)
LAZY(curl, CURLMsg *, curl_multi_info_read, (CURLM *m, int *left), (m, left), NULL)
LAZY(curl, CURLMcode, curl_multi_socket_action, (CURLM *m, curl_socket_t s, int ev, int *running),
     (m, s, ev, running), CURLM_INTERNAL_ERROR)

const char *curl_easy_strerror(CURLcode rc)
{
    const char *(*f)(CURLcode);
    void *p = lazy_sym(&lib_curl, open_curl, "curl_easy_strerror");
    memcpy(&f, &p, sizeof f);
    return f ? f(rc) : lib_curl.error;
}

const char *curl_multi_strerror(CURLMcode rc)
{
    const char *(*f)(CURLMcode);
    void *p = lazy_sym(&lib_curl, open_curl, "curl_multi_strerror");
    memcpy(&f, &p, sizeof f);
    return f ? f(rc) : lib_curl.error;
}

/* setopt takes one argument whose type the option number's range gives (as libcurl itself reads it). */
CURLcode curl_easy_setopt(CURL *h, CURLoption opt, ...)
{
    CURLcode (*f)(CURL *, CURLoption, ...);
    void *p = lazy_sym(&lib_curl, open_curl, "curl_easy_setopt");
    memcpy(&f, &p, sizeof f);
    if (!f)
        return CURLE_FAILED_INIT;
    va_list ap;
    va_start(ap, opt);
    CURLcode rc;
    if (opt < CURLOPTTYPE_OBJECTPOINT)
        rc = f(h, opt, va_arg(ap, long));
    else if (opt < CURLOPTTYPE_OFF_T)
        rc = f(h, opt, va_arg(ap, void *)); /* object and function pointers have the same representation here */
    else if (opt < CURLOPTTYPE_BLOB)
        rc = f(h, opt, va_arg(ap, curl_off_t));
    else
        rc = f(h, opt, va_arg(ap, void *));
    va_end(ap);
    return rc;
}

CURLMcode curl_multi_setopt(CURLM *m, CURLMoption opt, ...)
{
    CURLMcode (*f)(CURLM *, CURLMoption, ...);
    void *p = lazy_sym(&lib_curl, open_curl, "curl_multi_setopt");
    memcpy(&f, &p, sizeof f);
    if (!f)
        return CURLM_INTERNAL_ERROR;
    va_list ap;
    va_start(ap, opt);
    CURLMcode rc;
    if (opt < CURLOPTTYPE_OBJECTPOINT)
        rc = f(m, opt, va_arg(ap, long));
    else if (opt < CURLOPTTYPE_OFF_T)
        rc = f(m, opt, va_arg(ap, void *));
    else
        rc = f(m, opt, va_arg(ap, curl_off_t));
    va_end(ap);
    return rc;
}

/* getinfo always takes a pointer to where the answer goes. */
CURLcode curl_easy_getinfo(CURL *h, CURLINFO info, ...)
{
    CURLcode (*f)(CURL *, CURLINFO, ...);
    void *p = lazy_sym(&lib_curl, open_curl, "curl_easy_getinfo");
    memcpy(&f, &p, sizeof f);
    if (!f)
        return CURLE_FAILED_INIT;
    va_list ap;
    va_start(ap, info);
    CURLcode rc = f(h, info, va_arg(ap, void *));
    va_end(ap);
    return rc;
}

/* ---- libarchive ------------------------------------------------------------------------------------------------- */

LAZY(archive, struct archive *, archive_read_new, (void), (), NULL)
LAZY(archive, struct archive *, archive_write_new, (void), (), NULL)
LAZY(archive, struct archive_entry *, archive_entry_new, (void), (), NULL)
LAZY_VOID(archive, archive_entry_free, (struct archive_entry *e), (e))
LAZY(archive, __LA_MODE_T, archive_entry_filetype, (struct archive_entry *e), (e), 0)
LAZY(archive, const char *, archive_entry_pathname, (struct archive_entry *e), (e), NULL)
LAZY(archive, la_int64_t, archive_entry_size, (struct archive_entry *e), (e), 0)
LAZY_VOID(archive, archive_entry_set_filetype, (struct archive_entry *e, unsigned int t), (e, t))
LAZY_VOID(archive, archive_entry_set_gname, (struct archive_entry *e, const char *s), (e, s))
LAZY_VOID(archive, archive_entry_set_uname, (struct archive_entry *e, const char *s), (e, s))
LAZY_VOID(archive, archive_entry_set_pathname, (struct archive_entry *e, const char *s), (e, s))
LAZY_VOID(archive, archive_entry_set_mtime, (struct archive_entry *e, time_t t, long ns), (e, t, ns))
LAZY_VOID(archive, archive_entry_set_perm, (struct archive_entry *e, __LA_MODE_T m), (e, m))
LAZY_VOID(archive, archive_entry_set_size, (struct archive_entry *e, la_int64_t n), (e, n))
LAZY(archive, int, archive_errno, (struct archive *a), (a), 0)
LAZY(archive, la_ssize_t, archive_read_data, (struct archive *a, void *b, size_t n), (a, b, n), ARCHIVE_FATAL)
LAZY(archive, int, archive_read_free, (struct archive *a), (a), ARCHIVE_FATAL)
LAZY(archive, int, archive_read_next_header, (struct archive *a, struct archive_entry **e), (a, e), ARCHIVE_FATAL)
LAZY(archive, int, archive_read_open_filename, (struct archive *a, const char *path, size_t bs), (a, path, bs),
     ARCHIVE_FATAL)
LAZY(archive, int, archive_read_open,
     (struct archive *a, void *d, archive_open_callback *o, archive_read_callback *r, archive_close_callback *c),
     (a, d, o, r, c), ARCHIVE_FATAL)
LAZY(archive, int, archive_read_support_filter_all, (struct archive *a), (a), ARCHIVE_FATAL)
LAZY(archive, int, archive_read_support_format_tar, (struct archive *a), (a), ARCHIVE_FATAL)
LAZY(archive, int, archive_write_add_filter_gzip, (struct archive *a), (a), ARCHIVE_FATAL)
LAZY(archive, int, archive_write_close, (struct archive *a), (a), ARCHIVE_FATAL)
LAZY(archive, la_ssize_t, archive_write_data, (struct archive *a, const void *b, size_t n), (a, b, n), ARCHIVE_FATAL)
LAZY(archive, int, archive_write_finish_entry, (struct archive *a), (a), ARCHIVE_FATAL)
LAZY(archive, int, archive_write_free, (struct archive *a), (a), ARCHIVE_FATAL)
LAZY(archive, int, archive_write_header, (struct archive *a, struct archive_entry *e), (a, e), ARCHIVE_FATAL)
LAZY(archive, int, archive_write_open_fd, (struct archive *a, int fd), (a, fd), ARCHIVE_FATAL)
LAZY(archive, int, archive_write_open,
     (struct archive *a, void *d, archive_open_callback *o, archive_write_callback *w, archive_close_callback *c),
     (a, d, o, w, c), ARCHIVE_FATAL)
LAZY(archive, int, archive_write_set_bytes_in_last_block, (struct archive *a, int n), (a, n), ARCHIVE_FATAL)
LAZY(archive, int, archive_write_set_bytes_per_block, (struct archive *a, int n), (a, n), ARCHIVE_FATAL)
LAZY(archive, int, archive_write_set_format_pax_restricted, (struct archive *a), (a), ARCHIVE_FATAL)

const char *archive_error_string(struct archive *a)
{
    const char *(*f)(struct archive *);
    void *p = lazy_sym(&lib_archive, open_archive, "archive_error_string");
    memcpy(&f, &p, sizeof f);
    return f ? f(a) : lib_archive.error;
}

/* The message is formatted here and handed over as "%s". */
void archive_set_error(struct archive *a, int err, const char *fmt, ...)
{
    void (*f)(struct archive *, int, const char *, ...);
    void *p = lazy_sym(&lib_archive, open_archive, "archive_set_error");
    memcpy(&f, &p, sizeof f);
    if (!f)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    f(a, err, "%s", msg);
}
