/* test_eif.c — EIF reader/writer: round trip, PCRs/CRC against an independent Python computation (hashlib/zlib),
 * signed images (PCR8), the 4x memory rule, corrupt images named by offset, and random/truncated input. */
#include "ndtest.h"
#include "nd_eif.h"
#include "nd_proc.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[4096];

static void make_tmpdir(void)
{
    const char *base = getenv("ND_TEST_TMP");
    if (!base)
        base = "/tmp";
    mkdir(base, 0755);
    snprintf(tmpdir, sizeof tmpdir, "%s/eif_XXXXXX", base);
    if (!mkdtemp(tmpdir))
        abort();
}

static void rm_tmpdir(void)
{
    const char *argv[] = {"rm", "-rf", tmpdir, NULL};
    nd_proc_opts o = {.argv = argv};
    nd_proc_result r;
    nd_proc_run(&o, &r, NULL);
    nd_proc_result_free(&r);
}

/* Runs a command, returns its stdout (malloc'd) or NULL. */
static char *run_out(const char *const *argv)
{
    nd_proc_opts o = {.argv = argv, .timeout_s = 30};
    nd_proc_result r;
    if (nd_proc_run(&o, &r, NULL) < 0)
        return NULL;
    char *s = r.exit_code == 0 ? strdup(r.out.data) : NULL;
    if (r.exit_code != 0)
        fprintf(stderr, "  command failed: %s %s\n", argv[0], r.err.data);
    nd_proc_result_free(&r);
    return s;
}

static json_t *python_check(const char *path)
{
    const char *argv[] = {"python3", ND_SOURCE_DIR "/tests/nitro/eif_check.py", path, NULL};
    char *out = run_out(argv);
    if (!out)
        return NULL;
    json_t *j = json_loads(out, 0, NULL);
    free(out);
    return j;
}

static const char *jstr(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (unsigned char)(seed >> 16);
    }
}

static const char *CMDLINE = "reboot=k panic=30 pci=off nomodules console=ttyS0 i8042.noaux i8042.nomux i8042.nopnp "
                             "i8042.dumbkbd random.trust_cpu=on";
static const char *META = "{\"ImageName\":\"hello\",\"ImageVersion\":\"1.0\",\"BuildMetadata\":{\"BuildTime\":"
                          "\"2024-01-01T00:00:00Z\",\"BuildTool\":\"nitro-cli\",\"BuildToolVersion\":\"1.2.2\","
                          "\"OperatingSystem\":\"linux\",\"KernelVersion\":\"4.14\"},\"DockerInfo\":{\"Id\":\"sha256:ab\"}}";

static unsigned char kernel[70000], rd1[30000], rd2[123457];

static int write_sample(const char *path, nd_eif_blob cert, nd_eif_info *info)
{
    fill(kernel, sizeof kernel, 1);
    fill(rd1, sizeof rd1, 2);
    fill(rd2, sizeof rd2, 3);
    nd_eif_blob rds[2] = {{rd1, sizeof rd1}, {rd2, sizeof rd2}};
    nd_eif_input in = {.kernel = {kernel, sizeof kernel},
                       .cmdline = {CMDLINE, strlen(CMDLINE)},
                       .ramdisks = rds,
                       .n_ramdisks = 2,
                       .metadata = {META, strlen(META)},
                       .certificate = cert,
                       .signature = {"sig", 3}};
    nd_err err;
    int rc = nd_eif_write(path, &in, info, &err);
    if (rc < 0)
        fprintf(stderr, "  write: %s\n", err.msg);
    return rc;
}

static void roundtrip_and_python(void)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/a.eif", tmpdir);
    nd_eif_info info;
    CHECK_EQ_INT(write_sample(path, (nd_eif_blob){NULL, 0}, &info), 0);
    CHECK_EQ_INT(info.version, 4);
    CHECK_EQ_INT(info.num_sections, 5);
    CHECK_EQ_INT(info.sections[0].type, ND_EIF_SEC_KERNEL);
    CHECK_EQ_INT(info.sections[0].offset, 548);
    CHECK_EQ_INT(info.sections[1].type, ND_EIF_SEC_CMDLINE);
    CHECK_EQ_INT(info.sections[2].type, ND_EIF_SEC_METADATA);
    CHECK_EQ_INT(info.sections[3].type, ND_EIF_SEC_RAMDISK);
    CHECK_EQ_INT(info.sections[4].size, sizeof rd2);
    CHECK(info.crc_ok);
    CHECK(!info.is_signed && !info.has_pcr8);
    CHECK_EQ_STR(info.cmdline, CMDLINE);
    CHECK_EQ_STR(info.metadata, META);
    CHECK_EQ_INT(info.trailing_bytes, 0);
    uint64_t size = 548 + 5 * 12 + sizeof kernel + strlen(CMDLINE) + strlen(META) + sizeof rd1 + sizeof rd2;
    CHECK_EQ_INT(info.file_size, size);

    json_t *py = python_check(path);
    CHECK(py != NULL);
    if (py) {
        CHECK_EQ_STR(info.pcr0, jstr(py, "PCR0"));
        CHECK_EQ_STR(info.pcr1, jstr(py, "PCR1"));
        CHECK_EQ_STR(info.pcr2, jstr(py, "PCR2"));
        char crc[16];
        snprintf(crc, sizeof crc, "%08x", info.crc_stored);
        CHECK_EQ_STR(crc, jstr(py, "crc_computed"));
        CHECK_EQ_STR(crc, jstr(py, "crc_stored"));
        CHECK_EQ_INT(info.min_memory_mib, json_integer_value(json_object_get(py, "min_memory_mib")));
        json_decref(py);
    }
    /* describe-eif shape and key order */
    char *d = nd_eif_describe_text(&info);
    CHECK(d && strncmp(d, "{\n  \"EifVersion\": 4,\n  \"Measurements\": {\n    \"HashAlgorithm\": \"Sha384 { ... }\",\n"
                          "    \"PCR0\": \"", 90) == 0);
    CHECK(d && strstr(d, "\"IsSigned\": false,\n  \"CheckCRC\": true,\n  \"ImageName\": \"hello\",\n  \"ImageVersion\": \"1.0\""));
    CHECK(d && strstr(d, "\"BuildTool\": \"nitro-cli\""));
    free(d);
    nd_eif_info_free(&info);
}

static void signed_pcr8(void)
{
    char key[4200], cert[4200], path[4200];
    snprintf(key, sizeof key, "%s/key.pem", tmpdir);
    snprintf(cert, sizeof cert, "%s/cert.pem", tmpdir);
    snprintf(path, sizeof path, "%s/signed.eif", tmpdir);
    const char *argv[] = {"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1",
                          "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=nitrodiag-test", NULL};
    char *o = run_out(argv);
    CHECK(o != NULL);
    free(o);
    FILE *f = fopen(cert, "rb");
    CHECK(f != NULL);
    if (!f)
        return;
    char pem[8192];
    size_t n = fread(pem, 1, sizeof pem, f);
    fclose(f);
    nd_eif_info info;
    CHECK_EQ_INT(write_sample(path, (nd_eif_blob){pem, n}, &info), 0);
    CHECK(info.is_signed && info.has_pcr8);
    CHECK_EQ_INT(info.sections[5].type, ND_EIF_SEC_SIGNATURE);
    json_t *py = python_check(path);
    CHECK(py != NULL);
    if (py) {
        CHECK_EQ_STR(info.pcr8, jstr(py, "PCR8"));
        CHECK_EQ_STR(info.pcr0, jstr(py, "PCR0"));
        json_decref(py);
    }
    char *d = nd_eif_describe_text(&info);
    CHECK(d && strstr(d, "\"PCR8\": \"") && strstr(d, "\"IsSigned\": true"));
    free(d);
    nd_eif_info_free(&info);
}

static void min_memory_rule(void)
{
    const uint64_t MiB = 1024 * 1024;
    CHECK_EQ_INT(nd_eif_min_memory_mib(0), 0);
    CHECK_EQ_INT(nd_eif_min_memory_mib(1), 4);
    CHECK_EQ_INT(nd_eif_min_memory_mib(MiB), 4);
    CHECK_EQ_INT(nd_eif_min_memory_mib(MiB + 1), 8);
    CHECK_EQ_INT(nd_eif_min_memory_mib(536 * MiB + 1), 2148); /* the seed's data-processing.eif */
    CHECK_EQ_INT(nd_eif_min_memory_mib(537 * MiB), 2148);
}

static unsigned char *load(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static int read_mem(const unsigned char *b, size_t n, nd_err *err)
{
    nd_eif_info info;
    nd_err_clear(err);
    int rc = nd_eif_read_mem(b, n, &info, err);
    if (rc == 0)
        nd_eif_info_free(&info);
    return rc;
}

static void corrupt_images(void)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/a.eif", tmpdir);
    size_t n;
    unsigned char *b = load(path, &n);
    CHECK(b != NULL);
    if (!b)
        return;
    unsigned char *c = malloc(n);
    nd_err err;

    memcpy(c, b, n);
    c[1] = 'x';
    CHECK_EQ_INT(read_mem(c, n, &err), -EBADMSG);
    CHECK(strstr(err.msg, "bad magic at offset 0") != NULL);

    CHECK_EQ_INT(read_mem(b, 100, &err), -EBADMSG);
    CHECK(strstr(err.msg, "truncated header") && strstr(err.msg, "offset 100"));

    CHECK_EQ_INT(read_mem(b, n - 10, &err), -EBADMSG); /* last ramdisk cut */
    CHECK(strstr(err.msg, "section 4") && strstr(err.msg, "runs past the end"));

    memcpy(c, b, n);
    c[26] = 0, c[27] = 40;
    CHECK_EQ_INT(read_mem(c, n, &err), -EBADMSG);
    CHECK(strstr(err.msg, "num_sections at offset 26 is 40") != NULL);

    memcpy(c, b, n);
    c[548 + 1] = 9; /* kernel section header type */
    CHECK_EQ_INT(read_mem(c, n, &err), -EBADMSG);
    CHECK(strstr(err.msg, "unknown section type 9") && strstr(err.msg, "offset 548"));

    memcpy(c, b, n);
    c[548 + 11] ^= 1; /* kernel section header size */
    CHECK_EQ_INT(read_mem(c, n, &err), -EBADMSG);
    CHECK(strstr(err.msg, "section header at offset 548 says") != NULL);

    memcpy(c, b, n);
    c[n - 1] ^= 0xff; /* data: structure fine, CRC wrong */
    nd_eif_info info;
    CHECK_EQ_INT(nd_eif_read_mem(c, n, &info, &err), 0);
    CHECK(!info.crc_ok);
    nd_eif_info_free(&info);

    CHECK_EQ_INT(nd_eif_read("/nonexistent/x.eif", &info, &err), -ENOENT);
    CHECK(strstr(err.msg, "/nonexistent/x.eif") != NULL);
    free(c);
    free(b);
}

static void random_and_truncated(void)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/a.eif", tmpdir);
    size_t n;
    unsigned char *b = load(path, &n);
    CHECK(b != NULL);
    if (!b)
        return;
    nd_err err;
    /* every truncation of the header region and a spread of longer ones */
    for (size_t len = 0; len < 700; len++)
        CHECK(read_mem(b, len, &err) < 0);
    for (size_t len = 700; len < n; len += 997)
        CHECK(read_mem(b, len, &err) < 0);
    unsigned char *c = malloc(n);
    unsigned seed = 12345;
    for (int it = 0; it < 3000; it++) {
        memcpy(c, b, n);
        int flips = 1 + it % 8;
        for (int k = 0; k < flips; k++) {
            seed = seed * 1103515245u + 12345u;
            size_t pos = (seed >> 8) % (it % 2 ? 700 : n); /* half the mutations hit the headers */
            seed = seed * 1103515245u + 12345u;
            c[pos] = (unsigned char)(seed >> 16);
        }
        read_mem(c, n, &err); /* must not crash; result either way */
    }
    for (int it = 0; it < 500; it++) { /* pure garbage with the right magic */
        fill(c, 2048, (unsigned)it + 99);
        memcpy(c, ".eif", 4);
        read_mem(c, 2048, &err);
    }
    free(c);
    free(b);
}

/* Padding (a large image for E26's 4x rule) is zeros inside the last ramdisk, written as a hole: the sections stay
 * back to back with no trailing bytes, the CRC (combined without reading the zeros) and the PCRs (which measure them)
 * match what python's zlib/hashlib compute over the whole file, and reading it from memory (no holes) agrees. */
static void padded_hole(void)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/padded.eif", tmpdir);
    fill(kernel, sizeof kernel, 1);
    fill(rd1, sizeof rd1, 2);
    fill(rd2, sizeof rd2, 3);
    const uint64_t pad = 3 * 1048576 + 7;
    nd_eif_blob rds[2] = {{rd1, sizeof rd1}, {rd2, sizeof rd2}};
    nd_eif_input in = {.kernel = {kernel, sizeof kernel}, .cmdline = {CMDLINE, strlen(CMDLINE)}, .ramdisks = rds,
                       .n_ramdisks = 2, .metadata = {META, strlen(META)}, .pad_zeros = pad};
    nd_eif_info info, mem;
    nd_err err;
    CHECK_EQ_INT(nd_eif_write(path, &in, &info, &err), 0);
    uint64_t size = 548 + 5 * 12 + sizeof kernel + strlen(CMDLINE) + strlen(META) + sizeof rd1 + sizeof rd2 + pad;
    CHECK_EQ_INT(info.file_size, size);
    CHECK_EQ_INT(info.sections[4].size, sizeof rd2 + pad);
    CHECK_EQ_INT(info.trailing_bytes, 0);
    CHECK(info.crc_ok);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (uint64_t)st.st_blocks * 512 < size - 2 * 1048576); /* the zeros take no disk */
    json_t *py = python_check(path);
    CHECK(py != NULL);
    if (py) {
        CHECK_EQ_STR(info.pcr0, jstr(py, "PCR0"));
        CHECK_EQ_STR(info.pcr1, jstr(py, "PCR1"));
        CHECK_EQ_STR(info.pcr2, jstr(py, "PCR2"));
        char crc[16];
        snprintf(crc, sizeof crc, "%08x", info.crc_stored);
        CHECK_EQ_STR(crc, jstr(py, "crc_computed"));
        json_decref(py);
    }
    unsigned char *all = malloc(size);
    FILE *f = fopen(path, "rb");
    CHECK(all && f && fread(all, 1, size, f) == size);
    if (f)
        fclose(f);
    if (all && nd_eif_read_mem(all, size, &mem, &err) == 0) {
        CHECK_EQ_STR(mem.pcr0, info.pcr0);
        CHECK_EQ_STR(mem.pcr2, info.pcr2);
        CHECK_EQ_INT(mem.crc_computed, info.crc_computed);
        nd_eif_info_free(&mem);
    } else {
        CHECK(!"the padded EIF reads from memory");
    }
    free(all);
    /* without the SHA-384 passes: same validation and CRC, no PCRs */
    CHECK_EQ_INT(nd_eif_read_unmeasured(path, &mem, &err), 0);
    CHECK_EQ_STR(mem.pcr0, "");
    CHECK(mem.crc_ok);
    CHECK_EQ_INT(mem.trailing_bytes, 0);
    nd_eif_info_free(&mem);
    in.n_ramdisks = 0;
    CHECK_EQ_INT(nd_eif_write(path, &in, NULL, &err), -EINVAL); /* padding needs a ramdisk */
    nd_eif_info_free(&info);
}

int main(void)
{
    make_tmpdir();
    ND_RUN(roundtrip_and_python);
    ND_RUN(signed_pcr8);
    ND_RUN(padded_hole);
    ND_RUN(min_memory_rule);
    ND_RUN(corrupt_images);
    ND_RUN(random_and_truncated);
    rm_tmpdir();
    return nd_test_summary();
}
