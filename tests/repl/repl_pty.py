#!/usr/bin/python3
"""Drives `nitrodiag repl` through a real pseudo-terminal, as a person would: an expression, a multi-line function,
Ctrl-C during a busy Lua loop and during a command that waits, tab completion, and Ctrl-D to leave.
Usage: repl_pty.py /path/to/nitrodiag. Prints one line per check and "N passed, N failed"."""
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


def read_until(pattern, timeout=10.0):
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
    read_until(r"busyloop", timeout=10)
    time.sleep(0.2)
    send("\x03")
    out = read_until(r"interrupted\r?\n> ", timeout=5)
    check("Ctrl-C interrupts a busy loop and returns to the prompt", out is not None, repr(out))

    marker = os.path.join(home, "pid")
    send("nd.proc.run{'sh','-c','echo $$ > %s; exec sleep 100'}\r" % marker)
    for _ in range(100):  # the command has started once it wrote its pid
        if os.path.exists(marker) and open(marker).read().strip():
            break
        time.sleep(0.1)
    time.sleep(0.2)
    send("\x03")
    out = read_until(r"interrupted\r?\n> ", timeout=5)
    check("Ctrl-C interrupts a waiting command", out is not None, repr(out))
    time.sleep(0.3)
    spid = int(open(marker).read().strip()) if os.path.exists(marker) else 0
    check("the interrupted command was killed", spid > 0 and not os.path.exists("/proc/%d" % spid), str(spid))

    send("r = nd.proc.run{'echo','still works'}\r")
    read_until(r"\n> ")
    send("r.stdout\r")
    out = read_until(r"\n> ")
    check("the REPL works after interrupts", out is not None and "still works" in out, repr(out))

    # "nd.proc.ru" + TAB completes to "nd.proc.run": evaluating it prints a function.
    send("nd.proc.ru\t")
    time.sleep(0.3)
    send("\r")
    out = read_until(r"\n> ", timeout=5)
    check("tab completes module members", out is not None and "function: 0x" in out, repr(out))

    send("\x04")
    out = read_until(r"$", timeout=3)
    _, status = os.waitpid(pid, 0)
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
