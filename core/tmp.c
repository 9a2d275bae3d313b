/*
 * tmp.c — stale temporaries of killed runs: recognising them by name and owner, removing or salvaging them
 * (contract in nd_tmp.h).
 */
#include "nd_tmp.h"

#include "nd_bundle.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool read_comm(long pid, char *buf, size_t n)
{
    char path[64];
    if (pid > 0)
        snprintf(path, sizeof path, "/proc/%ld/comm", pid);
    else
        snprintf(path, sizeof path, "/proc/self/comm");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t r = read(fd, buf, n - 1);
    close(fd);
    if (r <= 0)
        return false;
    buf[r] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    return true;
}

bool nd_tmp_owner_gone(long pid)
{
    if (pid <= 0 || pid == (long)getpid())
        return false;
    if (kill((pid_t)pid, 0) < 0 && errno == ESRCH)
        return true;
    char theirs[64], ours[64];
    if (read_comm(pid, theirs, sizeof theirs) && read_comm(0, ours, sizeof ours))
        return strcmp(theirs, ours) != 0; /* the pid now belongs to another program */
    return false; /* alive (or unknowable): leave it */
}

/* Parses "p<digits>-XXXXXX" at s (the whole rest of the name). */
static long parse_owner(const char *s)
{
    if (s[0] != 'p' || s[1] < '0' || s[1] > '9')
        return 0;
    char *end = NULL;
    long pid = strtol(s + 1, &end, 10);
    if (!end || *end != '-' || strlen(end + 1) != 6 || pid <= 0)
        return 0;
    return pid;
}

long nd_tmp_owner_of(const char *base, bool *is_bundle)
{
    if (is_bundle)
        *is_bundle = false;
    if (!strncmp(base, ".nitrodiag-", 11)) {
        const char *m = strstr(base, ".tar.gz" ND_BUNDLE_TEMP_MARK);
        if (!m)
            return 0;
        long pid = parse_owner(m + 8);
        if (pid && is_bundle)
            *is_bundle = true;
        return pid;
    }
    if (!strncmp(base, "nitrodiag-", 10)) {
        /* nitrodiag-<what>-p<pid>-XXXXXX: the owner part is the second-to-last '-' field */
        size_t n = strlen(base);
        if (n < 10 + 10)
            return 0;
        const char *last = base + n - 7; /* "-XXXXXX" */
        if (*last != '-')
            return 0;
        const char *p = last - 1;
        while (p > base + 10 && *p != '-')
            p--;
        if (*p != '-')
            return 0;
        return parse_owner(p + 1);
    }
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    int rc = flag == FTW_DP ? rmdir(path) : unlink(path);
    return rc < 0 && errno != ENOENT ? -1 : 0;
}

/* .<name>.tar.gz.p<pid>-XXXXXX -> <dir>/<name>.partial.tar.gz (then -2, -3 … when taken) */
static int salvage(const char *dir, const char *base, const char *from, char *to, size_t tosz)
{
    const char *m = strstr(base, ".tar.gz" ND_BUNDLE_TEMP_MARK);
    int len = (int)(m - base) - 1;
    for (int i = 1; i < 100; i++) {
        int n = i == 1 ? snprintf(to, tosz, "%s/%.*s.partial.tar.gz", dir, len, base + 1)
                       : snprintf(to, tosz, "%s/%.*s.partial-%d.tar.gz", dir, len, base + 1, i);
        if (n < 0 || (size_t)n >= tosz) /* a cut name could be someone else's file */
            return -ENAMETOOLONG;
        int rc = nd_rename_noreplace(from, to);
        if (rc != -EEXIST)
            return rc;
    }
    return -EEXIST;
}

int nd_rename_noreplace(const char *from, const char *to)
{
    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno == EINVAL || errno == ENOSYS) { /* the filesystem cannot: link + unlink never overwrites either */
        if (link(from, to) != 0)
            return -errno;
        unlink(from);
        return 0;
    }
    return -errno;
}

int nd_tmp_sweep(const char *dir, nd_tmp_cb cb, void *ud, nd_err *err)
{
    DIR *d = opendir(dir && dir[0] ? dir : ".");
    if (!d)
        return nd_err_set(err, -errno, "%s: %s", dir, nd_err_str(-errno));
    int found = 0;
    struct dirent *e;
    char path[4096], to[4096], msg[700];
    while ((e = readdir(d))) {
        bool is_bundle;
        long pid = nd_tmp_owner_of(e->d_name, &is_bundle);
        if (!pid)
            continue;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path)
            continue;
        struct stat st;
        if (lstat(path, &st) < 0 || st.st_uid != geteuid())
            continue;
        if (is_bundle ? !S_ISREG(st.st_mode) : !S_ISDIR(st.st_mode))
            continue;
        if (!nd_tmp_owner_gone(pid))
            continue;
        found++;
        if (!is_bundle) {
            int rc = nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
            if (cb) {
                snprintf(msg, sizeof msg, "%s", rc == 0 ? "" : strerror(errno));
                cb(ud, path, rc == 0 ? "removed" : "failed", msg);
            }
            continue;
        }
        nd_bundle_contents c;
        nd_err rerr;
        bool useful = st.st_size > 0 && nd_bundle_read(path, &c, &rerr) == 0;
        if (useful) {
            useful = c.nmembers > 0;
            nd_bundle_contents_free(&c);
        }
        if (useful) {
            int rc = salvage(dir, e->d_name, path, to, sizeof to);
            if (cb)
                cb(ud, path, rc == 0 ? "salvaged" : "failed", rc == 0 ? to : nd_err_str(rc));
        } else {
            int rc = unlink(path) < 0 ? -errno : 0;
            if (cb)
                cb(ud, path, rc == 0 ? "removed" : "failed", rc == 0 ? "" : nd_err_str(rc));
        }
    }
    closedir(d);
    return found;
}
