#!/usr/bin/python3
"""Drives `nitrodiag repl` through a real pseudo-terminal, as a person would: an expression, a multi-line function,
Ctrl-C during a busy Lua loop and during a command that waits, tab completion, and Ctrl-D to leave.
Usage: repl_pty.py /path/to/nitrodiag. Prints one line per check and "N passed, N failed".

Every wait is for a condition (a prompt, a marker, a process gone) with one generous deadline, never a fixed sleep
that a loaded machine or an ASan build could outrun (issue 13: the old 5 s waits failed under `make asan`)."""
import os
import pty
import re
import select
import shutil
import sys
import tempfile
import time

NITRODIAG = sys.argv[1]
passed = failed = 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok   " + name)
    else:
        failed += 1
        print("FAIL " + name + (": " + detail if detail else ""))
    sys.stdout.flush()


home = tempfile.mkdtemp(prefix="nd-repl-")
pid, fd = pty.fork()
if pid == 0:
    os.environ["HOME"] = home
    os.environ["TERM"] = "xterm"
    os.execv(NITRODIAG, [NITRODIAG, "repl"])

buf = b""
WAIT = float(os.environ.get("ND_REPL_WAIT", "120"))  # deadline for any one condition; only a hang reaches it


def wait_for(cond, timeout=WAIT):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def read_until(pattern, timeout=WAIT):
    """Reads the terminal until the regex matches the output seen since the last call; returns that output."""
    global buf
    deadline = time.time() + timeout
    rx = re.compile(pattern.encode() if isinstance(pattern, str) else pattern)
    while time.time() < deadline:
        m = rx.search(buf)
        if m:
            out, buf = buf[:m.end()], buf[m.end():]
            return out.decode(errors="replace")
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            if not data:
                break
            buf += data
    out, buf = buf, b""
    return None if not rx.search(out) else out.decode(errors="replace")


def send(s):
    os.write(fd, s.encode())


try:
    check("banner and prompt", read_until(r"Ctrl-D exits\.\r?\n> ") is not None)

    send("1 + 41\r")
    out = read_until(r"\n> ")
    check("expression prints its value", out is not None and "42" in out, repr(out))

    send("function twice(x)\r")
    out = read_until(r">> ")
    check("multi-line input continues with >>", out is not None, repr(out))
    send("  return x * 2\r")
    read_until(r">> ")
    send("end\r")
    read_until(r"\n> ")
    send("twice(21)\r")
    out = read_until(r"\n> ")
    check("multi-line function defined and called", out is not None and "42" in out, repr(out))

    send("{ a = 1, b = { 'x' } }\r")
    out = read_until(r"\n> ")
    check("tables are pretty-printed", out is not None and 'a = 1' in out and '"x"' in out, repr(out))

    send("t = {}; t.self = t\r")
    read_until(r"\n> ")
    send("t\r")
    out = read_until(r"\n> ")
    check("cycles are shown, not followed", out is not None and "<cycle>" in out, repr(out))

    # Ctrl-C only once the chunk runs (it prints a marker first), so a loaded machine cannot make it race.
    send("print('busy' .. 'loop') while true do end\r")
    read_until(r"busyloop")
    send("\x03")
    out = read_until(r"interrupted\r?\n> ")
    check("Ctrl-C interrupts a busy loop and returns to the prompt", out is not None, repr(out))

    marker = os.path.join(home, "pid")
    send("nd.proc.run{'sh','-c','echo $$ > %s; exec sleep 100'}\r" % marker)
    # the command has started once it wrote its pid (and exec'd sleep: its cmdline says so)
    def started():
        try:
            p = int(open(marker).read().strip())
            return b"sleep" in open("/proc/%d/cmdline" % p, "rb").read()
        except (OSError, ValueError):
            return False
    wait_for(started)
    send("\x03")
    out = read_until(r"interrupted\r?\n> ")
    check("Ctrl-C interrupts a waiting command", out is not None, repr(out))
    spid = int(open(marker).read().strip()) if os.path.exists(marker) else 0

    def gone():
        try:  # gone, or a zombie nobody reaps yet
            return open("/proc/%d/stat" % spid).read().split(")")[-1].split()[0] == "Z"
        except OSError:
            return True
    check("the interrupted command was killed", spid > 0 and wait_for(gone), str(spid))

    send("r = nd.proc.run{'echo','still works'}\r")
    read_until(r"\n> ")
    send("r.stdout\r")
    out = read_until(r"\n> ")
    check("the REPL works after interrupts", out is not None and "still works" in out, repr(out))

    # "nd.proc.ru" + TAB completes to "nd.proc.run": evaluating it prints a function.
    send("nd.proc.ru\t")
    read_until(r"proc\.ru(\x07|\r|\x1b\[[0-9;]*[A-Za-z])*n")  # the completion was drawn (bell, cursor move, "n")
    send("\r")
    out = read_until(r"\n> ")
    check("tab completes module members", out is not None and "function: 0x" in out, repr(out))

    send("\x04")
    status = None
    last_eof = [time.time()]

    def exited():
        global status
        try:  # keep draining the terminal so the REPL never blocks writing
            while select.select([fd], [], [], 0)[0] and os.read(fd, 4096):
                pass
        except OSError:
            pass
        if time.time() - last_eof[0] > 2:
            # a Ctrl-D typed while the terminal was between modes can be lost: an empty line's EOF may be repeated
            last_eof[0] = time.time()
            try:
                send("\x04")
            except OSError:
                pass
        p, st = os.waitpid(pid, os.WNOHANG)
        if p == pid:
            status = st
        return status is not None
    wait_for(exited)
    status = status if status is not None else -1
    check("Ctrl-D exits with status 0", os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, str(status))
    check("history file written", os.path.exists(os.path.join(home, ".nitrodiag_history")))
finally:
    try:
        os.kill(pid, 9)
    except OSError:
        pass
    shutil.rmtree(home, ignore_errors=True)

print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
