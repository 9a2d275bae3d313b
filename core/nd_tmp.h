/*
 * nd_tmp.h — what a nitrodiag run leaves in TMPDIR or its output directory while it works, and how the next run
 * cleans up after one that was killed (SIGKILL, OOM killer, power cut) — as package managers and sosreport do.
 *
 * Every temporary carries its owner's pid in a recognisable name:
 *   directories  nitrodiag-<what>-p<pid>-XXXXXX              (fs.tmpdir: artifacts, EIF builds, the simulated host)
 *   bundles      .<bundle name>.tar.gz.p<pid>-XXXXXX          (nd_bundle_open, in the output directory)
 * An entry is stale when its owner is gone: no process with that pid, or one running another program (the pid was
 * reused). A live owner's files are never touched.
 */
#ifndef ND_TMP_H
#define ND_TMP_H

#include "nd.h"

/* True when the process that owns a temporary (its pid) is gone: no such process, or it runs another program than
 * this one (compared by /proc/<pid>/comm), or it is this very process never (false for our own pid). */
bool nd_tmp_owner_gone(long pid);

/* The owner pid encoded in a temporary's base name, or 0 when the name is not one of ours (see above). *is_bundle
 * tells a temporary bundle from a directory name. */
long nd_tmp_owner_of(const char *base, bool *is_bundle);

/* Called for each stale entry handled: action is "removed", "salvaged" (then detail is the new path) or "failed"
 * (detail is why). */
typedef void (*nd_tmp_cb)(void *ud, const char *path, const char *action, const char *detail);

/* Scans dir (one level) for stale temporaries owned by this user: a directory is removed (the whole tree; symlinks
 * are removed, never followed; no other filesystem is entered); a temporary bundle holding at least one complete
 * member is renamed to `<bundle name>.partial.tar.gz` so what the killed run collected is kept, an empty or unreadable
 * one is removed. Returns the number of stale entries found, or a negative code when dir cannot be read (-ENOENT for
 * a missing directory). */
int nd_tmp_sweep(const char *dir, nd_tmp_cb cb, void *ud, nd_err *err);

/* Renames from to to without ever replacing an existing file: renameat2(RENAME_NOREPLACE), or link + unlink where
 * the filesystem cannot. Returns 0, -EEXIST when to exists (try another name), or another negative errno. */
int nd_rename_noreplace(const char *from, const char *to);

#endif
