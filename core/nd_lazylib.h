/*
 * nd_lazylib.h — what core/lazylib.c (libcurl and libarchive loaded on first use) can say about a library that did
 * not load. Their functions themselves fail the way the library does (NULL, CURLE_FAILED_INIT, ARCHIVE_FATAL); a
 * caller that gets NULL from a constructor asks here whether the library is missing rather than out of memory.
 */
#ifndef ND_LAZYLIB_H
#define ND_LAZYLIB_H

/* lib: "curl" or "archive". Returns why it could not be loaded ("cannot load libarchive: libarchive.so.13: cannot
 * open shared object file: …"), or "" when it loaded or was not needed yet. Never NULL. */
const char *nd_lazylib_error(const char *lib);

#endif
