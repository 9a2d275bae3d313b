#!/usr/bin/python3
"""nitrodiag on a real terminal (a pseudo-terminal of a given size, Debian's python3 pty module only): the live status
line never exceeds the terminal's width at 80 and 200 columns, findings wrap to it, diag10 asks before terminating an
enclave it did not start, and the REPL honours --sim, waits in nd.sleep after the prompt was idle, and nd.help(name).
Usage: tty_pty.py NITRODIAG SOURCE_DIR. Prints one line per check and "N passed, N failed"."""
import fcntl
import os
import pty
import re
import select
import struct
import sys
import tempfile
import termios
import time

NITRODIAG, SRC = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
passed = failed = 0
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok   " + name)
    else:
        failed += 1
        print("FAIL " + name + (": " + detail[-2000:] if detail else ""))
    sys.stdout.flush()


class Term:
    def __init__(self, argv, cols, rows=40, env=None):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.environ.update({"TERM": "xterm", "NITRODIAG_PATH": "", "HOME": tempfile.mkdtemp(prefix="nd-tty-")})
            os.environ.update(env or {})
            os.chdir(tempfile.mkdtemp(prefix="nd-tty-cwd-"))
            os.execv(NITRODIAG, [NITRODIAG] + argv)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.out = b""

    # deadlines for a condition (a prompt, a line): generous, since a loaded machine or an ASan build is slow, and
    # each wait ends as soon as its text is there
    def read_until(self, pattern, timeout=120.0):
        rx = re.compile(pattern.encode())
        deadline = time.time() + timeout
        while time.time() < deadline:
            if rx.search(self.out):
                return True
            r, _, _ = select.select([self.fd], [], [], 0.05)
            if r:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:
                    return bool(rx.search(self.out))
                if not data:
                    return bool(rx.search(self.out))
                self.out += data
        return bool(rx.search(self.out))

    def send(self, data):
        os.write(self.fd, data)

    def finish(self, timeout=120.0):
        self.read_until(r"\Z\A", timeout=0.1)
        deadline = time.time() + timeout
        while time.time() < deadline:
            r, _, _ = select.select([self.fd], [], [], 0.05)
            if r:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:
                    break
                if not data:
                    break
                self.out += data
        _, status = os.waitpid(self.pid, 0)
        return os.waitstatus_to_exitcode(status), self.out.decode(errors="replace")


def status_writes(text):
    """The texts of the live status line: what follows each \\r\\x1b[K up to the next \\r or escape (a text ended by
    a newline is a finished line, not the status line)."""
    return [m for m in re.findall(r"\r\x1b\[K([^\r\n\x1b]*)(?=[\r\x1b])", text) if m]


def lines(text):
    """What each row of the terminal finally shows: a carriage return goes back to the start of the row and every
    \\x1b[K after it clears the row, so the row holds what was written after its last \\r."""
    return [ANSI.sub("", l.split("\r")[-1] if l.split("\r")[-1] else (l.rstrip("\r").split("\r") or [""])[-1])
            for l in text.split("\n")]


PROGRESS = os.path.join(SRC, "tests/lua/runbooks/progress.lua")
for cols in (80, 200):
    t = Term(["run", PROGRESS], cols)
    rc, out = t.finish()
    writes = status_writes(out)
    widest = max((len(w) for w in writes), default=0)
    check("%d columns: the run ends (exit 0)" % cols, rc == 0, out)
    check("%d columns: the status line was redrawn several times" % cols, len(writes) >= 3, repr(writes[:3]))
    check("%d columns: no status line is wider than the terminal (widest %d)" % (cols, widest), widest <= cols - 1,
          repr(writes[:2]))
    if cols == 200:
        check("200 columns: the status line uses the width (more than 120 characters)", widest > 120, str(widest))
    final = [l for l in lines(out) if "T_WRAP" in l or l.startswith("         ")]
    check("%d columns: every line fits the terminal (findings and step lines wrapped)" % cols,
          all(len(l) <= cols for l in lines(out)), "\n".join(l for l in lines(out) if len(l) > cols))
    if cols == 80:
        check("80 columns: a long finding is wrapped, nothing lost", "LAST" in out and "DONE" in out and
              not any("LAST" in l and "T_WRAP" in l for l in lines(out)), "\n".join(final))
    else:
        check("200 columns: the finding's first line uses the width",
              any("T_WRAP" in l and len(l) > 120 for l in lines(out)), "\n".join(final))
    check("%d columns: the info finding is shown, dim" % cols, "\x1b[2m  [info] T_NOTE: an info note" in out, out[-600:])

# diag10 asks before terminating an enclave it did not start, and does what the answer says
for answer, want in ((b"n\r", "ENCLAVES_HOLD_POOL"), (b"y\r", "confirmed at the prompt")):
    t = Term(["--sim", "cpu-pool-exhausted", "diag10", "runs=basic", "run_seconds=1"], 120,
             env={"TMPDIR": tempfile.mkdtemp(prefix="nd-tty-tmp-")})
    asked = t.read_until(r"Terminate them all\? \[y/N\] ", timeout=120)
    check("diag10 on a terminal shows the running enclave and asks (%s)" % answer.decode().strip(),
          asked and "running: " in t.out.decode(errors="replace") and "hello-basic" in t.out.decode(errors="replace"),
          t.out.decode(errors="replace")[-800:])
    t.send(answer)
    rc, out = t.finish()
    check("diag10 after answering %s: %s" % (answer.decode().strip(), want), want in out, out[-1500:])
    if answer == b"y\r":
        check("diag10 after yes: the test run came up", rc == 0 and "1 run(s) came up" in out, out[-1500:])
    else:
        check("diag10 after no: exit 1, nothing terminated", rc == 1 and "STALE_ENCLAVES" not in out, out[-1500:])

# cleanup with nothing named asks about each enclave on a terminal
t = Term(["--sim", "cpu-pool-exhausted", "cleanup"], 120, env={"TMPDIR": tempfile.mkdtemp(prefix="nd-tty-tmp-")})
asked = t.read_until(r'terminate i-\S+ "hello-basic" CID 16, debug mode, up \d+ s, .*\? \[y/N\] ', timeout=120)
check("cleanup alone on a terminal asks about the enclave", asked, t.out.decode(errors="replace")[-600:])
t.send(b"y\r")
rc, out = t.finish()
check("cleanup after yes terminates it", rc == 0 and "terminated 1 enclave(s): freed 2 CPUs and 1024 MiB" in out, out[-800:])

# the REPL: --sim, nd.sleep after an idle prompt, nd.help(name)
# --sim-realtime: the REPL checks wall-clock waits (under --sim alone nd.sleep runs in simulated time)
t = Term(["--sim-realtime", "--sim", "cpu-pool-exhausted", "repl"], 100, env={"TMPDIR": tempfile.mkdtemp(prefix="nd-tty-tmp-")})
check("REPL starts on the simulated host", t.read_until(r"simulated host: cpu-pool-exhausted.*\n.*> "), t.out.decode())
t.out = b""
t.send(b"#nd.nitro.describe_enclaves()\r")
check("REPL --sim: nitro-cli is the simulated one (one enclave)", t.read_until(r"\r\n1\r\n> "), t.out.decode())
t.out = b""
t.send(b"nd.host.root() ~= '/'\r")
check("REPL --sim: the root is the simulated host", t.read_until(r"\r\ntrue\r\n> "), t.out.decode())
time.sleep(2.0)  # the prompt is idle: the loop's clock must not lag behind
t.out = b""
t0 = time.time()
t.send(b"nd.sleep(2.5)\r")
t.read_until(r"\r\n> ", timeout=120)
took = time.time() - t0
check("REPL: nd.sleep(2.5) after an idle prompt waits 2.5 s (took %.2f s)" % took, took >= 2.4, "")
t.out = b""
t.send(b"nd.help('nd.eif')\r")
check("REPL: nd.help('nd.eif') shows that module", t.read_until(r"members: .*read\(\).*\r\n(.*\r\n)*> ", timeout=120)
      and b"modules: " not in t.out, t.out.decode())
t.send(b"\x04")
rc, out = t.finish()
check("REPL exits on Ctrl-D", rc == 0, out[-300:])

# Ctrl-D typed while a chunk runs (the terminal is in cooked mode then) still ends the REPL at the next prompt: the
# kernel must not turn it into an EOF marker that libedit later reads as a NUL byte
t = Term(["repl"], 100)
t.read_until(r"> ")
t.send(b"print('RUNNING') nd.sleep(1.5) print('SLEPT')\r")
running = t.read_until(r"RUNNING\r\n")
t.send(b"\x04")
rc, out = t.finish(timeout=120)
check("REPL: a Ctrl-D typed while a chunk runs exits at the next prompt", running and rc == 0 and "SLEPT" in out,
      out[-300:])

print("%d passed, %d failed" % (passed, failed))
sys.exit(0 if failed == 0 else 1)
