/*
 * nd.h — what every core module shares: the error value and the context object.
 *
 * Conventions (see docs/architecture.md):
 *  - Public core functions are prefixed nd_ and declared in core/nd_<module>.h.
 *  - A function that can fail returns an int: 0 (or a non-negative count) on success, a negative errno-style code on
 *    failure (the same values libuv uses: -ENOENT, -ETIMEDOUT, …), and fills an nd_err with a one-line message when
 *    the caller passed one. Core code never prints, never exits and never aborts on bad input.
 *  - No global mutable state: anything a module must remember lives in the nd_ctx the caller owns, or in an object
 *    the module returns to the caller.
 */
#ifndef ND_H
#define ND_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <errno.h>

#ifndef ND_VERSION
#define ND_VERSION "0.0.0"
#endif

#if defined(__GNUC__)
#define ND_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define ND_PRINTF(f, a)
#endif

/* An error message that travels with a negative code. */
typedef struct nd_err {
    int code;        /* negative errno-style value, 0 when no error */
    char msg[512];   /* one line, no trailing newline */
} nd_err;

/* Records code and a printf-style message in err (which may be NULL). Returns code, so callers can write
 * `return nd_err_set(err, -EINVAL, "bad header at offset %zu", off);`. */
int nd_err_set(nd_err *err, int code, const char *fmt, ...) ND_PRINTF(3, 4);

/* Clears err to "no error". */
void nd_err_clear(nd_err *err);

/* The symbolic name of a negative code ("ENOENT", "ETIMEDOUT"); "EUNKNOWN" when unknown. Never NULL. */
const char *nd_err_name(int code);

/* The reverse of nd_err_name: the negative code named "ENOENT", "ETIMEDOUT", …; 0 for NULL or a name nd_err_name
 * never gives (e.g. "EUNKNOWN"). */
int nd_err_code(const char *name);

/* A short human description of a negative code (strerror-like). Never NULL. */
const char *nd_err_str(int code);

struct uv_loop_s;

/*
 * nd_ctx — the one context object. The program that embeds the core (the nitrodiag binary, the proxy, a test)
 * creates it, owns it, and passes it to the modules that need the loop or the host settings.
 */
typedef struct nd_ctx {
    struct uv_loop_s *loop;  /* the one libuv loop shared by the core and Lua (luv) */
    char root[4096];         /* --root: host files are read under this prefix; "" means "/" */
    char nitro_cli[4096];    /* path or name of nitro-cli; default "nitro-cli" (found on PATH) */
    int verbosity;           /* -1 quiet, 0 normal, 1+ verbose */
    struct nd_proc *procs;   /* commands started by nd_proc_start and not yet released (owned by the runner) */
    int live_procs;
    int watchdog_fd;         /* nd_proc_watchdog_start: our end of the watchdog's socket (valid when watchdog_pid) */
    int watchdog_pid;        /* the watchdog process, 0 when there is none */
    char sim_root[4096];     /* non-empty while a simulated host is active (nd.sim): commands run only from its bin/
                              * directory and vsock goes only to its enclaves — nothing reaches the real host */
    char self_exe[4096];     /* this program (nitrodiag itself may run under a simulated host: it stays on it) */
    double time_scale;       /* simulated seconds per real second (0 or 1: real time); nd.sleep and console
                              * windows are divided by it (docs/simulator.md, "Simulated time") */
} nd_ctx;

/* Initialises ctx with defaults around an existing loop (not owned). Returns 0. */
int nd_ctx_init(nd_ctx *ctx, struct uv_loop_s *loop);

/* Under a simulated host (ctx->sim_root set): the command argv0 stands for, as a path of the simulated host's bin/
 * directory, in out. argv0 may be a bare name or any path whose last component is a simulated command ("nitro-cli",
 * "/usr/bin/systemctl"); paths already inside the bin directory pass. Returns 0, or -EPERM when it is not a command
 * of the simulated host (nothing may run on the real host), -ENAMETOOLONG. Without a simulated host: argv0 as is. */
int nd_ctx_sim_command(const nd_ctx *ctx, const char *argv0, char *out, size_t outsz);

/* A wait of `seconds` simulated seconds in real seconds: seconds / ctx->time_scale, but never less than
 * min(seconds, 1 s). Used by nd.sleep and by console windows (nd.nitro); command timeouts stay real (they are
 * safety limits). */
double nd_ctx_real_wait(const nd_ctx *ctx, double seconds);

/* Joins ctx->root and an absolute host path into out (size outsz): "/etc/x" under root "/sim" -> "/sim/etc/x".
 * Returns 0, or -ENAMETOOLONG when it does not fit. */
int nd_ctx_path(const nd_ctx *ctx, const char *host_path, char *out, size_t outsz);

#endif
