/*
 * mkinitramfs.c — writes the newc cpio archive the real-kernel test boots as its initramfs, with libarchive, so
 * device nodes (/dev/console) go in without mknod or root. A host-side test tool, like the kernel's gen_init_cpio.
 *   mkinitramfs OUT.cpio dir:/dev nod:/dev/console=c:5:1 file:/init=build/enclave/init ...
 * Files keep their permission bits; everything is owned by root. Exit 0, or 1 with one line on stderr.
 */
#include <archive.h>
#include <archive_entry.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

static int fail(const char *what, const char *arg, const char *why)
{
    fprintf(stderr, "mkinitramfs: %s %s: %s\n", what, arg, why);
    return 1;
}

static int add(struct archive *a, const char *spec)
{
    struct archive_entry *e = archive_entry_new();
    const char *eq = strchr(spec, '=');
    char path[1024];
    int rc = 0;
    archive_entry_set_uid(e, 0);
    archive_entry_set_gid(e, 0);
    archive_entry_set_mtime(e, 0, 0);
    archive_entry_set_nlink(e, 1);
    archive_entry_set_size(e, 0);
    if (strncmp(spec, "dir:", 4) == 0) {
        archive_entry_set_pathname(e, spec + 4 + (spec[4] == '/'));
        archive_entry_set_mode(e, AE_IFDIR | 0755);
        archive_entry_set_nlink(e, 2);
        rc = archive_write_header(a, e) == ARCHIVE_OK ? 0 : fail("dir", spec, archive_error_string(a));
    } else if (strncmp(spec, "nod:", 4) == 0 && eq) {
        unsigned maj, min;
        char type;
        if (sscanf(eq + 1, "%c:%u:%u", &type, &maj, &min) != 3 || (type != 'c' && type != 'b')) {
            archive_entry_free(e);
            return fail("node", spec, "expected nod:PATH=c:MAJOR:MINOR");
        }
        snprintf(path, sizeof path, "%.*s", (int)(eq - spec - 4), spec + 4);
        archive_entry_set_pathname(e, path + (path[0] == '/'));
        archive_entry_set_mode(e, (type == 'c' ? AE_IFCHR : AE_IFBLK) | 0600);
        archive_entry_set_rdev(e, makedev(maj, min));
        rc = archive_write_header(a, e) == ARCHIVE_OK ? 0 : fail("node", spec, archive_error_string(a));
    } else if (strncmp(spec, "file:", 5) == 0 && eq) {
        snprintf(path, sizeof path, "%.*s", (int)(eq - spec - 5), spec + 5);
        const char *src = eq + 1;
        FILE *f = fopen(src, "rb");
        struct stat st;
        if (!f || fstat(fileno(f), &st) < 0) {
            if (f)
                fclose(f);
            archive_entry_free(e);
            return fail("file", src, "cannot open");
        }
        archive_entry_set_pathname(e, path + (path[0] == '/'));
        archive_entry_set_mode(e, AE_IFREG | (st.st_mode & 0777));
        archive_entry_set_size(e, st.st_size);
        if (archive_write_header(a, e) != ARCHIVE_OK) {
            rc = fail("file", src, archive_error_string(a));
        } else {
            char buf[65536];
            size_t n;
            while ((n = fread(buf, 1, sizeof buf, f)) > 0)
                if (archive_write_data(a, buf, n) < 0) {
                    rc = fail("file", src, archive_error_string(a));
                    break;
                }
        }
        fclose(f);
    } else {
        rc = fail("bad spec", spec, "expected dir:PATH, nod:PATH=c:MAJ:MIN or file:DEST=SRC");
    }
    archive_entry_free(e);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: mkinitramfs OUT.cpio SPEC...\n");
        return 2;
    }
    struct archive *a = archive_write_new();
    archive_write_set_format_cpio_newc(a);
    archive_write_add_filter_none(a);
    if (archive_write_open_filename(a, argv[1]) != ARCHIVE_OK) {
        int rc = fail("open", argv[1], archive_error_string(a));
        archive_write_free(a);
        return rc;
    }
    int rc = 0;
    for (int i = 2; i < argc && rc == 0; i++)
        rc = add(a, argv[i]);
    if (archive_write_close(a) != ARCHIVE_OK && rc == 0)
        rc = fail("close", argv[1], archive_error_string(a));
    archive_write_free(a);
    return rc;
}
