/*
 * test_bundle.c — collection and the bundle writer/reader, checked against independent sources: file contents
 * written here, tail(1)-style expectations computed here, SHA-256 recomputed with OpenSSL from what libarchive
 * extracts, and the kernel's own errors (ENOENT, EACCES with capabilities dropped, EROFS, ENOSPC on a 64 KiB tmpfs).
 */
#include "ndtest.h"
#include "nd_bundle.h"
#include "nd_collect.h"
#include "nd_tmp.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <linux/capability.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[512];
static char rootdir[600];
static char outdir[600];
static nd_ctx ctx;

/* A command run to completion on a private loop (nd_proc_run), then recorded as runbooks' add_command records it. */
/* This process's CPU time in seconds (user + system). */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int add_command(nd_bundle *b, const char *name, const char *const *argv, double timeout_s, size_t cap,
                       nd_err *err)
{
    nd_proc_opts o = {.argv = argv, .timeout_s = timeout_s, .kill_grace_s = 1.0, .capture_cap = cap};
    nd_proc_result res;
    double t0 = nd_collect_now();
    int rc = nd_proc_run(&o, &res, err);
    if (rc < 0)
        return rc;
    rc = nd_bundle_add_proc_result(b, name, argv, &res, t0, 0, err);
    nd_proc_result_free(&res);
    return rc;
}

static void write_file(const char *rel, const char *data, size_t len)
{
    char p[1024];
    snprintf(p, sizeof p, "%s%s", rootdir, rel);
    FILE *f = fopen(p, "wb");
    fwrite(data, 1, len, f);
    fclose(f);
}

static void rmrf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *de;
        while (d && (de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                continue;
            char p[1024];
            snprintf(p, sizeof p, "%s/%s", path, de->d_name);
            rmrf(p);
        }
        if (d)
            closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (de->d_name[0] != '.' || (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")))
            n++;
    if (d)
        closedir(d);
    return n;
}

/* Extracts member `rel` (under the top dir) of a tar.gz into a malloc'd buffer. */
static char *member(const char *tgz, const char *rel, size_t *len)
{
    struct archive *a = archive_read_new();
    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    char *out = NULL;
    if (archive_read_open_filename(a, tgz, 65536) != ARCHIVE_OK) {
        archive_read_free(a);
        return NULL;
    }
    struct archive_entry *e;
    while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
        const char *n = strchr(archive_entry_pathname(e), '/');
        if (n && !strcmp(n + 1, rel)) {
            size_t sz = (size_t)archive_entry_size(e);
            out = malloc(sz + 1);
            la_ssize_t r = archive_read_data(a, out, sz);
            *len = r < 0 ? 0 : (size_t)r;
            out[*len] = 0;
            break;
        }
    }
    archive_read_free(a);
    return out;
}

static json_t *artifact(json_t *manifest, const char *name)
{
    size_t i;
    json_t *it;
    json_array_foreach(json_object_get(manifest, "artifacts"), i, it)
        if (!strcmp(json_string_value(json_object_get(it, "name")), name))
            return it;
    return NULL;
}

static const char *sfield(json_t *it, const char *k)
{
    return json_string_value(json_object_get(it, k));
}

/* Drops (on = false) or restores the capabilities that let root read any file. */
static int dac_caps(bool on)
{
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) < 0)
        return -1;
    unsigned mask = (1u << CAP_DAC_OVERRIDE) | (1u << CAP_DAC_READ_SEARCH);
    if (on)
        d[0].effective |= mask & d[0].permitted;
    else
        d[0].effective &= ~mask;
    return (int)syscall(SYS_capset, &h, d);
}

static void setup(void)
{
    const char *base = getenv("ND_TEST_TMP");
    if (!base)
        base = "/tmp";
    mkdir(base, 0755);
    snprintf(tmpdir, sizeof tmpdir, "%s/bundle.XXXXXX", base);
    CHECK(mkdtemp(tmpdir) != NULL);
    snprintf(rootdir, sizeof rootdir, "%s/root", tmpdir);
    snprintf(outdir, sizeof outdir, "%s/out", tmpdir);
    mkdir(rootdir, 0755);
    mkdir(outdir, 0755);
    char p[1024];
    snprintf(p, sizeof p, "%s/var", rootdir);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/var/log", rootdir);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/var/log/nitro_enclaves", rootdir);
    mkdir(p, 0755);
    nd_ctx_init(&ctx, NULL);
    snprintf(ctx.root, sizeof ctx.root, "%s", rootdir);
}

/* The span chooser: tail by lines / bytes and the cap, on a file written here. */
static void test_tail_span(void)
{
    char text[4096];
    size_t len = 0;
    for (int i = 1; i <= 100; i++)
        len += (size_t)snprintf(text + len, sizeof text - len, "line %d\n", i);
    write_file("/var/log/t.log", text, len);
    nd_collect_span sp;
    nd_collect_opts o = {.tail_lines = 3};
    CHECK_EQ_INT(nd_collect_span_open(&ctx, "/var/log/t.log", &o, &sp, NULL), 0);
    char buf[256] = {0};
    int64_t n = nd_collect_span_read(&sp, 0, buf, sizeof buf - 1);
    CHECK_EQ_STR(buf, "line 98\nline 99\nline 100\n");
    CHECK_EQ_INT(n, 25);
    CHECK(sp.truncated);
    CHECK_EQ_STR(sp.reason, "tail_lines=3");
    nd_collect_span_close(&sp);

    o = (nd_collect_opts){.tail_lines = 1000};
    CHECK_EQ_INT(nd_collect_span_open(&ctx, "/var/log/t.log", &o, &sp, NULL), 0);
    CHECK_EQ_INT(sp.len, len);
    CHECK(!sp.truncated);
    nd_collect_span_close(&sp);

    o = (nd_collect_opts){.cap = 10};
    CHECK_EQ_INT(nd_collect_span_open(&ctx, "/var/log/t.log", &o, &sp, NULL), 0);
    memset(buf, 0, sizeof buf);
    nd_collect_span_read(&sp, 0, buf, sizeof buf - 1);
    CHECK_EQ_STR(buf, "\nline 100\n");
    CHECK_EQ_STR(sp.reason, "cap=10");
    nd_collect_span_close(&sp);

    /* no final newline: the partial last line counts as a line */
    write_file("/var/log/nonl.log", "a\nb\nc", 5);
    o = (nd_collect_opts){.tail_lines = 2};
    CHECK_EQ_INT(nd_collect_span_open(&ctx, "/var/log/nonl.log", &o, &sp, NULL), 0);
    memset(buf, 0, sizeof buf);
    nd_collect_span_read(&sp, 0, buf, sizeof buf - 1);
    CHECK_EQ_STR(buf, "b\nc");
    nd_collect_span_close(&sp);
    CHECK_EQ_INT(nd_collect_tail_lines_mem("x\ny\nz\n", 6, 2), 2);
}

/* A 6 GiB sparse log: its last lines come back at once (the cost is the tail, not the file). */
static void test_tail_huge_sparse(void)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/var/log/huge.log", rootdir);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    off_t big = (off_t)6 << 30;
    const char *tail = "\nlast but one\nthe last line\n";
    CHECK_EQ_INT(pwrite(fd, tail, strlen(tail), big), (long long)strlen(tail));
    close(fd);
    nd_collect_span sp;
    nd_collect_opts o = {.tail_lines = 2};
    /* CPU time, not wall time: reading the holes would cost seconds of it, and a loaded machine cannot add any */
    double t0 = cpu_s();
    CHECK_EQ_INT(nd_collect_span_open(&ctx, "/var/log/huge.log", &o, &sp, NULL), 0);
    char buf[64] = {0};
    nd_collect_span_read(&sp, 0, buf, sizeof buf - 1);
    CHECK_EQ_STR(buf, "last but one\nthe last line\n");
    CHECK(cpu_s() - t0 < 1.0);
    CHECK_EQ_INT(sp.size, (long long)big + (long long)strlen(tail));
    nd_collect_span_close(&sp);
    /* more lines asked than the file has: the backwards scan stops at the cap, it never reads 6 GiB of holes */
    o = (nd_collect_opts){.tail_lines = 1000, .cap = 1 << 20};
    t0 = cpu_s();
    CHECK_EQ_INT(nd_collect_span_open(&ctx, "/var/log/huge.log", &o, &sp, NULL), 0);
    CHECK(cpu_s() - t0 < 1.0);
    CHECK_EQ_INT(sp.len, 1 << 20);
    CHECK_EQ_STR(sp.reason, "cap=1048576");
    nd_collect_span_close(&sp);
    unlink(p);
}

static void test_open_errors(void)
{
    nd_collect_span sp;
    nd_err err;
    CHECK_EQ_INT(nd_collect_span_open(&ctx, "/var/log/nope.log", NULL, &sp, &err), -ENOENT);
    CHECK(strstr(err.msg, "no such file") != NULL);
    CHECK_EQ_INT(nd_collect_span_open(&ctx, "/var/log", NULL, &sp, &err), -EISDIR);
    char p[1024];
    snprintf(p, sizeof p, "%s/var/log/fifo", rootdir);
    mkfifo(p, 0644);
    /* a FIFO with no writer must not hang the collection */
    CHECK_EQ_INT(nd_collect_span_open(&ctx, "/var/log/fifo", NULL, &sp, &err), -EINVAL);
    CHECK(strstr(err.msg, "not a regular file") != NULL);
    CHECK_EQ_INT(nd_collect_status_of(-EACCES), ND_COLLECT_DENIED);
    CHECK_EQ_STR(nd_collect_status_name(ND_COLLECT_TIMEOUT), "timeout");
}

/* Under --root, an absolute symlink resolves inside the root, never to the real host file. */
static void test_symlink_in_root(void)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/etc", rootdir);
    mkdir(p, 0755);
    write_file("/etc/nd-test-hostname", "simulated-host\n", 15);
    snprintf(p, sizeof p, "%s/var/log/link.log", rootdir);
    CHECK_EQ_INT(symlink("/etc/nd-test-hostname", p), 0);
    snprintf(p, sizeof p, "%s/var/log/escape.log", rootdir);
    CHECK_EQ_INT(symlink("../../../../../../../../../etc/hostname", p), 0);
    nd_collect_span sp;
    char buf[64] = {0};
    CHECK_EQ_INT(nd_collect_span_open(&ctx, "/var/log/link.log", NULL, &sp, NULL), 0);
    nd_collect_span_read(&sp, 0, buf, sizeof buf - 1);
    CHECK_EQ_STR(buf, "simulated-host\n");
    nd_collect_span_close(&sp);
    /* ../ past the root stays at the root: ROOT/etc/hostname does not exist */
    CHECK_EQ_INT(nd_collect_span_open(&ctx, "/var/log/escape.log", NULL, &sp, NULL), -ENOENT);
}

/* The walk used where openat2 is missing (Amazon Linux 2's 4.14 kernel) gives the same answers as RESOLVE_IN_ROOT:
 * absolute and relative symlinks, directory symlinks, ".." past the root, loops. Compared with the real host files
 * planted outside the root, which must never be the ones read. */
static void read_beneath(int rfd, const char *rel, char *out, size_t outsz, int *rc)
{
    out[0] = '\0';
    int fd = nd_collect_open_beneath(rfd, rel, O_RDONLY | O_CLOEXEC);
    *rc = fd < 0 ? fd : 0;
    if (fd >= 0) {
        ssize_t n = read(fd, out, outsz - 1);
        out[n > 0 ? n : 0] = '\0';
        close(fd);
    }
}

static void test_open_beneath_walk(void)
{
    char p[1024], buf[64];
    int rc;
    snprintf(p, sizeof p, "%s/etc", rootdir);
    mkdir(p, 0755);
    write_file("/etc/nd-walk-target", "inside\n", 7);
    snprintf(p, sizeof p, "%s/var/log/walk-abs.log", rootdir);
    CHECK_EQ_INT(symlink("/etc/nd-walk-target", p), 0);
    snprintf(p, sizeof p, "%s/var/log/walk-rel.log", rootdir);
    CHECK_EQ_INT(symlink("../../etc/nd-walk-target", p), 0);
    snprintf(p, sizeof p, "%s/var/log/walk-escape.log", rootdir);
    CHECK_EQ_INT(symlink("../../../../../../../../../etc/hostname", p), 0);
    snprintf(p, sizeof p, "%s/var/log/walk-dir", rootdir);
    CHECK_EQ_INT(symlink("/etc", p), 0);
    snprintf(p, sizeof p, "%s/var/log/walk-chain", rootdir);
    CHECK_EQ_INT(symlink("walk-dir/nd-walk-target", p), 0);
    snprintf(p, sizeof p, "%s/var/log/walk-loop", rootdir);
    CHECK_EQ_INT(symlink("walk-loop", p), 0);

    int rfd = open(rootdir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    CHECK(rfd >= 0);
    read_beneath(rfd, "var/log/walk-abs.log", buf, sizeof buf, &rc);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_STR(buf, "inside\n");
    read_beneath(rfd, "var/log/walk-rel.log", buf, sizeof buf, &rc);
    CHECK_EQ_STR(buf, "inside\n");
    read_beneath(rfd, "var/log/walk-dir/nd-walk-target", buf, sizeof buf, &rc);
    CHECK_EQ_STR(buf, "inside\n");
    read_beneath(rfd, "var/log/walk-chain", buf, sizeof buf, &rc);
    CHECK_EQ_STR(buf, "inside\n");
    read_beneath(rfd, "/../../etc/nd-walk-target", buf, sizeof buf, &rc); /* ".." at the root stays there */
    CHECK_EQ_STR(buf, "inside\n");
    read_beneath(rfd, "var/log/walk-escape.log", buf, sizeof buf, &rc); /* ROOT/etc/hostname does not exist */
    CHECK_EQ_INT(rc, -ENOENT);
    read_beneath(rfd, "var/log/walk-loop", buf, sizeof buf, &rc);
    CHECK_EQ_INT(rc, -ELOOP);
    read_beneath(rfd, "var/log/walk-abs.log/x", buf, sizeof buf, &rc);
    CHECK_EQ_INT(rc, -ENOTDIR);
    read_beneath(rfd, "var/log/none", buf, sizeof buf, &rc);
    CHECK_EQ_INT(rc, -ENOENT);
    int dfd = nd_collect_open_beneath(rfd, "var/log/walk-dir/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(dfd >= 0);
    struct stat a, b;
    snprintf(p, sizeof p, "%s/etc", rootdir);
    CHECK(dfd >= 0 && fstat(dfd, &a) == 0 && stat(p, &b) == 0 && a.st_ino == b.st_ino);
    if (dfd >= 0)
        close(dfd);
    close(rfd);
}

static int glob_n;
static void glob_count(void *ud, const char *p)
{
    (void)ud;
    CHECK(strncmp(p, "/var/log/nitro_enclaves/err", 27) == 0);
    glob_n++;
}

static void test_glob(void)
{
    write_file("/var/log/nitro_enclaves/err2026-11-22T10:00:00.log", "E26 one\n", 8);
    write_file("/var/log/nitro_enclaves/err2026-11-22T11:00:00.log", "E39 two\n", 8);
    write_file("/var/log/nitro_enclaves/nitro_enclaves.log", "main\n", 5);
    glob_n = 0;
    CHECK_EQ_INT(nd_collect_glob(&ctx, "/var/log/nitro_enclaves/err*.log", glob_count, NULL, NULL), 2);
    CHECK_EQ_INT(glob_n, 2);
    CHECK_EQ_INT(nd_collect_glob(&ctx, "/var/log/none/*.log", glob_count, NULL, NULL), 0);
}

static void sha_of(const char *data, size_t len, char hex[65])
{
    unsigned char d[32];
    unsigned int n;
    EVP_Digest(data, len, d, &n, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

/* One bundle with every outcome: ok, missing, denied, timeout, command not found, cap truncation, binary. */
static void test_bundle_outcomes(void)
{
    nd_bundle *b = NULL;
    nd_err err;
    nd_bundle_opts o = {.out_dir = outdir, .runbook = "diag10", .host = "ip-10-0-0-1"};
    CHECK_EQ_INT(nd_bundle_open(&ctx, &o, &b, &err), 0);
    if (!b)
        return;
    CHECK(strstr(nd_bundle_topdir(b), "nitrodiag-diag10-ip-10-0-0-1-") == nd_bundle_topdir(b));

    char big[5000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)('a' + i % 26);
    big[sizeof big - 1] = '\n';
    write_file("/var/log/big.log", big, sizeof big);
    write_file("/var/log/nitro_enclaves/nitro_enclaves.log", "2026 start\nAKIAIOSFODNN7EXAMPLE used\n", 37);
    /* compressed data is the one kind stored as is (nothing in it can be recognised); any other bytes are scrubbed */
    static const unsigned char bin[] = {0x1f, 0x8b, 8, 0, 0, 1, 2, 'A', 'K', 'I', 'A', 'I', 'O', 'S', 'F', 'O',
                                        'D', 'N', 'N', '7', 'E', 'X', 'A', 'M', 'P', 'L', 'E', '\n'};
    write_file("/var/log/blob.bin", (const char *)bin, sizeof bin);
    write_file("/var/log/secret.log", "top secret\n", 11);
    char sp[1024];
    snprintf(sp, sizeof sp, "%s/var/log/secret.log", rootdir);
    chmod(sp, 0);

    nd_collect_opts tail = {.tail_lines = 1};
    CHECK_EQ_INT(nd_bundle_add_file(b, "nitro_enclaves.log.tail", "/var/log/nitro_enclaves/nitro_enclaves.log", &tail,
                                    &err), 0);
    CHECK_EQ_INT(nd_bundle_add_file(b, NULL, "/var/log/missing.log", NULL, &err), 0);
    nd_collect_opts cap = {.cap = 100};
    CHECK_EQ_INT(nd_bundle_add_file(b, "big.log", "/var/log/big.log", &cap, &err), 0);
    CHECK_EQ_INT(nd_bundle_add_file(b, "blob.bin", "/var/log/blob.bin", NULL, &err), 0);
    bool dropped = dac_caps(false) == 0;
    CHECK(dropped);
    CHECK_EQ_INT(nd_bundle_add_file(b, "secret.log", "/var/log/secret.log", NULL, &err), 0);
    dac_caps(true);
    CHECK_EQ_INT(nd_bundle_add_file(b, "dir", "/var/log", NULL, &err), 0);
    CHECK_EQ_INT(nd_bundle_add_glob(b, "/var/log/nitro_enclaves/err*.log", NULL, NULL, &err), 2);
    CHECK_EQ_INT(nd_bundle_add_glob(b, "/var/log/nitro_enclaves/core*.dump", NULL, NULL, &err), 0);

    const char *echo[] = {"sh", "-c", "echo out; echo err >&2; exit 3", NULL};
    CHECK_EQ_INT(add_command(b, "echo.txt", echo, 5, 0, &err), 0);
    const char *nf[] = {"nitrodiag-no-such-command", "--x", NULL};
    CHECK_EQ_INT(add_command(b, "nf.txt", nf, 5, 0, &err), 0);
    /* 3 s: a shell starting slowly on a loaded machine still prints before the timeout (0.3 s did not always) */
    const char *slow[] = {"sh", "-c", "echo partial; exec sleep 30", NULL};
    double t0 = nd_collect_now();
    CHECK_EQ_INT(add_command(b, "slow.txt", slow, 3, 0, &err), 0);
    CHECK(nd_collect_now() - t0 < 25); /* the timeout ended it, not the 30 s sleep */
    const char *loud[] = {"sh", "-c", "seq 1 100000", NULL};
    CHECK_EQ_INT(add_command(b, "seq.txt", loud, 5, 1000, &err), 0);
    CHECK_EQ_INT(nd_bundle_add_data(b, "note.txt", "hello\n", 6, NULL, &err), 0);
    CHECK_EQ_INT(nd_bundle_add_data(b, "../evil", "x", 1, NULL, &err), -EINVAL);
    CHECK_EQ_INT(nd_bundle_add_data(b, "note.txt", "again\n", 6, NULL, &err), 0);
    json_t *j = json_pack("{s:s,s:i,s:{s:s}}", "enclave", "i-0abc", "cpus", 2, "creds", "Token", "sekrit-token");
    CHECK_EQ_INT(nd_bundle_add_json(b, "state.json", j, NULL, &err), 0);
    json_decref(j);

    json_t *extra = json_pack("{s:s}", "verdict", "fail");
    CHECK_EQ_INT(nd_bundle_finish(b, extra, &err), 0);
    json_decref(extra);
    char path[4096];
    snprintf(path, sizeof path, "%s", nd_bundle_path(b));
    CHECK_EQ_INT(nd_bundle_finish(b, NULL, &err), -EALREADY);
    nd_bundle_free(b);
    CHECK(access(path, R_OK) == 0);
    CHECK_EQ_INT(count_files(outdir), 1); /* no temporary file left */

    nd_bundle_contents c;
    CHECK_EQ_INT(nd_bundle_read(path, &c, &err), 0);
    CHECK(c.manifest != NULL);
    if (!c.manifest)
        return;
    size_t checked = 0;
    CHECK_EQ_INT(nd_bundle_verify(&c, NULL, NULL, &checked, &err), 0);
    CHECK(checked >= 10);
    json_t *m = c.manifest;
    CHECK_EQ_STR(sfield(m, "verdict"), "fail");
    CHECK(json_is_false(json_object_get(m, "interrupted")));

    json_t *it = artifact(m, "nitro_enclaves.log.tail");
    CHECK_EQ_STR(sfield(it, "status"), "ok");
    CHECK(json_is_true(json_object_get(it, "truncated")));
    CHECK_EQ_STR(sfield(it, "truncated_reason"), "tail_lines=1");
    CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(it, "redactions"), "aws_access_key_id")), 1);
    size_t len = 0;
    char *data = member(path, "nitro_enclaves.log.tail", &len);
    CHECK_EQ_STR(data, "AKIA[REDACTED] used\n");
    char hex[65];
    sha_of(data, len, hex);
    CHECK_EQ_STR(sfield(it, "sha256"), hex);
    CHECK_EQ_INT(json_integer_value(json_object_get(it, "bytes")), len);
    free(data);

    it = artifact(m, "missing.log");
    CHECK_EQ_STR(sfield(it, "status"), "missing");
    CHECK(strstr(sfield(it, "error"), "no such file") != NULL);
    CHECK(json_is_null(json_object_get(it, "sha256")));

    it = artifact(m, "big.log");
    CHECK(json_is_true(json_object_get(it, "truncated")));
    CHECK_EQ_INT(json_integer_value(json_object_get(it, "bytes")), 100);
    CHECK_EQ_INT(json_integer_value(json_object_get(it, "source_bytes")), 5000);
    data = member(path, "big.log", &len);
    CHECK(len == 100 && memcmp(data, big + sizeof big - 100, 100) == 0); /* the TAIL is kept */
    free(data);

    it = artifact(m, "blob.bin");
    CHECK(json_is_true(json_object_get(it, "binary")));
    data = member(path, "blob.bin", &len);
    CHECK(len == sizeof bin && memcmp(data, bin, sizeof bin) == 0); /* never mangled */
    free(data);

    if (dropped) {
        it = artifact(m, "secret.log");
        CHECK_EQ_STR(sfield(it, "status"), "denied");
        CHECK(strstr(sfield(it, "error"), "permission denied") != NULL);
    }
    CHECK_EQ_STR(sfield(artifact(m, "dir"), "status"), "error");
    CHECK(strstr(sfield(artifact(m, "dir"), "error"), "is a directory") != NULL);
    CHECK_EQ_STR(sfield(artifact(m, "err2026-11-22T10:00:00.log"), "kind"), "glob");
    CHECK_EQ_STR(sfield(artifact(m, "core*.dump"), "status"), "missing");

    it = artifact(m, "echo.txt");
    CHECK_EQ_STR(sfield(it, "status"), "ok");
    CHECK_EQ_INT(json_integer_value(json_object_get(it, "exit_code")), 3);
    CHECK_EQ_STR(sfield(it, "source"), "sh -c 'echo out; echo err >&2; exit 3'");
    data = member(path, "echo.txt.stderr", &len);
    CHECK_EQ_STR(data, "err\n");
    free(data);

    it = artifact(m, "nf.txt");
    CHECK_EQ_STR(sfield(it, "status"), "missing");
    CHECK(strstr(sfield(it, "error"), "command not found") != NULL);

    it = artifact(m, "slow.txt");
    CHECK_EQ_STR(sfield(it, "status"), "timeout");
    data = member(path, "slow.txt", &len);
    CHECK_EQ_STR(data, "partial\n");
    free(data);

    it = artifact(m, "seq.txt");
    CHECK(json_is_true(json_object_get(it, "truncated")));
    CHECK_EQ_INT(json_integer_value(json_object_get(it, "bytes")), 1000);
    data = member(path, "seq.txt", &len);
    CHECK(len == 1000 && strcmp(data + len - 7, "100000\n") == 0);
    free(data);

    CHECK(artifact(m, "note.txt~2") != NULL);
    it = artifact(m, "state.json");
    CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(it, "redactions"), "imds_credentials")), 1);
    data = member(path, "state.json", &len);
    CHECK(strstr(data, "sekrit") == NULL && strstr(data, "i-0abc") != NULL);
    free(data);

    /* tampering is detected */
    c.members[0].sha256[0] = c.members[0].sha256[0] == '0' ? '1' : '0';
    CHECK_EQ_INT(nd_bundle_verify(&c, NULL, NULL, NULL, &err), 1);
    free(c.members[0].name);
    c.members[0].name = strdup("nitrodiag-x/renamed");
    CHECK_EQ_INT(nd_bundle_verify(&c, NULL, NULL, NULL, &err), 2); /* one missing, one unlisted */
    nd_bundle_contents_free(&c);
    unlink(path);
}

/* An unwritable output directory (read-only mount, or a path through a file) fails at open with a clear message. */
static void test_unwritable(void)
{
    nd_bundle *b = NULL;
    nd_err err;
    char p[1024];
    snprintf(p, sizeof p, "%s/var/log/big.log/sub", rootdir);
    nd_bundle_opts o = {.out_dir = p, .runbook = "x"};
    CHECK_EQ_INT(nd_bundle_open(&ctx, &o, &b, &err), -ENOTDIR);
    CHECK(strstr(err.msg, "cannot write the bundle in") != NULL);
    char ro[1024];
    snprintf(ro, sizeof ro, "%s/ro", tmpdir);
    mkdir(ro, 0755);
    if (mount("tmpfs", ro, "tmpfs", MS_RDONLY, "size=64k") == 0) {
        o.out_dir = ro;
        CHECK_EQ_INT(nd_bundle_open(&ctx, &o, &b, &err), -EROFS);
        CHECK(strstr(err.msg, ro) != NULL);
        umount(ro);
    } else {
        printf("# skip read-only mount: %s\n", strerror(errno));
    }
    rmdir(ro);
}

/* A full disk: the error names the bundle, the temporary file is removed, no final file appears. */
static void test_full_disk(void)
{
    char fs[1024];
    snprintf(fs, sizeof fs, "%s/full", tmpdir);
    mkdir(fs, 0755);
    if (mount("tmpfs", fs, "tmpfs", 0, "size=64k") != 0) {
        printf("# skip full disk: cannot mount tmpfs: %s\n", strerror(errno));
        rmdir(fs);
        return;
    }
    /* 1 MiB of incompressible bytes */
    size_t n = 1 << 20;
    char *rnd = malloc(n);
    unsigned x = 12345;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        rnd[i] = (char)(x >> 16);
    }
    write_file("/var/log/random.bin", rnd, n);
    free(rnd);
    nd_bundle *b = NULL;
    nd_err err;
    nd_bundle_opts o = {.out_dir = fs, .runbook = "full"};
    CHECK_EQ_INT(nd_bundle_open(&ctx, &o, &b, &err), 0);
    int rc = nd_bundle_add_file(b, "random.bin", "/var/log/random.bin", NULL, &err);
    if (rc == 0)
        rc = nd_bundle_finish(b, NULL, &err);
    CHECK_EQ_INT(rc, -ENOSPC);
    CHECK(strstr(err.msg, "No space left") != NULL);
    printf("# %s\n", err.msg);
    CHECK(nd_bundle_add_data(b, "late", "x", 1, NULL, &err) < 0); /* broken (or closed) stays broken */
    nd_bundle_free(b);
    CHECK_EQ_INT(count_files(fs), 0);
    umount(fs);
    rmdir(fs);
}

/* Discarding (or freeing without finishing) leaves nothing behind. */
static void test_discard(void)
{
    nd_bundle *b = NULL;
    CHECK_EQ_INT(nd_bundle_open(&ctx, &(nd_bundle_opts){.out_dir = outdir}, &b, NULL), 0);
    CHECK(access(nd_bundle_temp_path(b), F_OK) == 0);
    nd_bundle_add_data(b, "a", "b", 1, NULL, NULL);
    nd_bundle_free(b);
    CHECK_EQ_INT(count_files(outdir), 0);
}

static void test_read_errors(void)
{
    nd_bundle_contents c;
    nd_err err;
    CHECK_EQ_INT(nd_bundle_read("/nonexistent/x.tar.gz", &c, &err), -ENOENT);
    char p[1024];
    snprintf(p, sizeof p, "%s/garbage.tar.gz", tmpdir);
    FILE *f = fopen(p, "w");
    fputs("this is not an archive at all, not even close\n", f);
    fclose(f);
    CHECK_EQ_INT(nd_bundle_read(p, &c, &err), -EBADMSG);
    unlink(p);
}

/* Percent-escaping: control characters, C1 controls, invalid UTF-8 and '%' become %XX; valid UTF-8 stays. */
static void test_escape(void)
{
    char out[256];
    nd_bundle_escape("plain-name_1.log", true, out, sizeof out);
    CHECK_EQ_STR(out, "plain-name_1.log");
    nd_bundle_escape("a\x01" "b\nc\x7f" "d", true, out, sizeof out);
    CHECK_EQ_STR(out, "a%01b%0Ac%7Fd");
    nd_bundle_escape("100%", true, out, sizeof out);
    CHECK_EQ_STR(out, "100%25");
    nd_bundle_escape("bad\xff\xfe", true, out, sizeof out);
    CHECK_EQ_STR(out, "bad%FF%FE");
    nd_bundle_escape("csi\xc2\x9b" "x", true, out, sizeof out); /* U+009B, a C1 control */
    CHECK_EQ_STR(out, "csi%C2%9Bx");
    nd_bundle_escape("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x99\x82", true, out, sizeof out); /* é € 🙂 */
    CHECK_EQ_STR(out, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x99\x82");
    nd_bundle_escape("over\xc0\xaf" "long \xed\xa0\x80" "sur", true, out, sizeof out); /* overlong '/', surrogate */
    CHECK_EQ_STR(out, "over%C0%AFlong %ED%A0%80sur");
    nd_bundle_escape("a/b", false, out, sizeof out);
    CHECK_EQ_STR(out, "a%2Fb");
    nd_bundle_escape("a/b", true, out, sizeof out);
    CHECK_EQ_STR(out, "a/b");
    /* cut at a character boundary, never inside an escape */
    char small[6];
    CHECK_EQ_INT(nd_bundle_escape("ab\x01z", true, small, sizeof small), 5);
    CHECK_EQ_STR(small, "ab%01");
    CHECK_EQ_INT(nd_bundle_escape("abc\x01", true, small, sizeof small), 3);
    CHECK_EQ_STR(small, "abc");
}

/* Odd host file names: every match is collected on its own, member names equal manifest names, secrets redacted. */
static void test_odd_names(void)
{
    static const char *const names[] = {"/var/log/odd/err\x01.log", "/var/log/odd/err\n.log",
                                        "/var/log/odd/err\xff.log",
                                        "/var/log/odd/err-AKIAIOSFODNN7EXAMPLE.log",
                                        "/var/log/odd/err-ok.log", NULL};
    char d[1024];
    snprintf(d, sizeof d, "%s/var/log/odd", rootdir);
    mkdir(d, 0755);
    for (int i = 0; names[i]; i++)
        write_file(names[i], "x\n", 2);
    nd_bundle *b = NULL;
    nd_err err;
    CHECK_EQ_INT(nd_bundle_open(&ctx, &(nd_bundle_opts){.out_dir = outdir, .runbook = "odd"}, &b, &err), 0);
    CHECK_EQ_INT(nd_bundle_add_glob(b, "/var/log/odd/err*.log", "", NULL, &err), 5);
    /* a caller's odd name is escaped too; a structurally bad one is refused */
    CHECK_EQ_INT(nd_bundle_add_data(b, "tab\there", "y", 1, NULL, &err), 0);
    CHECK_EQ_INT(nd_bundle_add_data(b, "../up", "y", 1, NULL, &err), -EINVAL);
    CHECK_EQ_INT(nd_bundle_add_glob(b, "/var/log/*.log", "../", NULL, &err), -EINVAL);
    CHECK_EQ_INT(nd_bundle_finish(b, NULL, &err), 0);
    const char *path = nd_bundle_path(b);
    nd_bundle_contents c;
    CHECK_EQ_INT(nd_bundle_read(path, &c, &err), 0);
    size_t checked = 0;
    CHECK_EQ_INT(nd_bundle_verify(&c, NULL, NULL, &checked, &err), 0);
    CHECK_EQ_INT(checked, 6);
    const char *want[] = {"err%01.log", "err%0A.log", "err%FF.log", "err-AKIA[REDACTED].log", "err-ok.log",
                          "tab%09here", NULL};
    for (int i = 0; want[i]; i++) {
        json_t *it = artifact(c.manifest, want[i]);
        CHECK(it != NULL);
        if (!it)
            printf("# missing %s\n", want[i]);
        else
            CHECK_EQ_STR(sfield(it, "status"), "ok");
    }
    for (size_t i = 0; i < c.nmembers; i++)
        CHECK(strstr(c.members[i].name, "AKIAIOSFODNN7EXAMPLE") == NULL);
    nd_bundle_contents_free(&c);
    nd_bundle_free(b);
    unlink(path);
}

/* A run killed half-way: the temporary file is readable up to its last finished member; the sweep keeps it as
 * .partial.tar.gz when its owner is dead, and never touches a live owner's files. */
static void test_partial_and_sweep(void)
{
    /* a dead pid: a child that exited and was reaped */
    pid_t dead = fork();
    if (dead == 0)
        _exit(0);
    waitpid(dead, NULL, 0);

    nd_bundle *b = NULL;
    nd_err err;
    CHECK_EQ_INT(nd_bundle_open(&ctx, &(nd_bundle_opts){.out_dir = outdir, .runbook = "killed"}, &b, &err), 0);
    CHECK_EQ_INT(nd_bundle_add_data(b, "one.txt", "first\n", 6, NULL, &err), 0);
    CHECK_EQ_INT(nd_bundle_add_data(b, "two.txt", "second\n", 7, NULL, &err), 0);
    /* copy the temporary file as it is now, under a name owned by the dead pid: what a SIGKILL leaves */
    char stale[1200], live_dir[1200], stale_dir[1200];
    snprintf(stale, sizeof stale, "%s/.nitrodiag-killed-h-20261206T000000Z.tar.gz.p%ld-AbCdEf", outdir, (long)dead);
    {
        FILE *in = fopen(nd_bundle_temp_path(b), "rb"), *out = fopen(stale, "wb");
        char buf[65536];
        size_t n;
        while (in && out && (n = fread(buf, 1, sizeof buf, in)) > 0)
            fwrite(buf, 1, n, out);
        if (in)
            fclose(in);
        if (out)
            fclose(out);
    }
    nd_bundle_contents c;
    CHECK_EQ_INT(nd_bundle_read(stale, &c, &err), 0);
    CHECK_EQ_INT(c.nmembers, 2);
    CHECK(c.partial);
    CHECK(c.manifest == NULL);
    nd_bundle_contents_free(&c);

    snprintf(stale_dir, sizeof stale_dir, "%s/nitrodiag-eif-p%ld-XyZ123", outdir, (long)dead);
    snprintf(live_dir, sizeof live_dir, "%s/nitrodiag-eif-p%ld-LiVe12", outdir, (long)getpid());
    mkdir(stale_dir, 0700);
    mkdir(live_dir, 0700);
    char inner[1300];
    snprintf(inner, sizeof inner, "%s/sub", stale_dir);
    mkdir(inner, 0700);
    snprintf(inner, sizeof inner, "%s/sub/link", stale_dir);
    CHECK(symlink("/etc/passwd", inner) == 0); /* removed, never followed */
    bool is_bundle;
    CHECK_EQ_INT(nd_tmp_owner_of("nitrodiag-eif-p123-AbCdEf", &is_bundle), 123);
    CHECK(!is_bundle);
    CHECK_EQ_INT(nd_tmp_owner_of(".nitrodiag-x.tar.gz.p77-AbCdEf", &is_bundle), 77);
    CHECK(is_bundle);
    CHECK_EQ_INT(nd_tmp_owner_of("nitrodiag-eif-AbCdEf", NULL), 0);
    CHECK_EQ_INT(nd_tmp_owner_of("other-p12-AbCdEf", NULL), 0);
    CHECK(!nd_tmp_owner_gone(getpid()));
    CHECK(nd_tmp_owner_gone(dead));

    CHECK_EQ_INT(nd_tmp_sweep(outdir, NULL, NULL, &err), 2);
    CHECK(access(stale, F_OK) != 0);
    CHECK(access(stale_dir, F_OK) != 0);
    CHECK(access("/etc/passwd", F_OK) == 0);
    CHECK(access(live_dir, F_OK) == 0);                 /* our own: alive */
    CHECK(access(nd_bundle_temp_path(b), F_OK) == 0);   /* our own bundle in progress */
    char salvaged[1200];
    snprintf(salvaged, sizeof salvaged, "%s/nitrodiag-killed-h-20261206T000000Z.partial.tar.gz", outdir);
    CHECK_EQ_INT(nd_bundle_read(salvaged, &c, &err), 0);
    CHECK_EQ_INT(c.nmembers, 2);
    nd_bundle_contents_free(&c);
    unlink(salvaged);
    rmdir(live_dir);
    /* an empty stale temporary (killed before the first member) is removed, not kept */
    snprintf(stale, sizeof stale, "%s/.nitrodiag-empty.tar.gz.p%ld-AbCdEf", outdir, (long)dead);
    fclose(fopen(stale, "w"));
    CHECK_EQ_INT(nd_tmp_sweep(outdir, NULL, NULL, &err), 1);
    CHECK(access(stale, F_OK) != 0);
    nd_bundle_free(b);
    CHECK_EQ_INT(count_files(outdir), 0);
}

int main(void)
{
    setup();
    ND_RUN(test_tail_span);
    ND_RUN(test_tail_huge_sparse);
    ND_RUN(test_open_errors);
    ND_RUN(test_glob);
    ND_RUN(test_symlink_in_root);
    ND_RUN(test_open_beneath_walk);
    ND_RUN(test_bundle_outcomes);
    ND_RUN(test_unwritable);
    ND_RUN(test_full_disk);
    ND_RUN(test_discard);
    ND_RUN(test_read_errors);
    ND_RUN(test_escape);
    ND_RUN(test_odd_names);
    ND_RUN(test_partial_and_sweep);
    rmrf(tmpdir);
    return nd_test_summary();
}
