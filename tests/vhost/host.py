#!/usr/bin/env python3
"""tests/vhost/host.py — the host side of the nd-vhost-vsock end-to-end test (run-qemu-test.sh), written with
Python's socket module only, independently of the backend's C code:
  - an echo server on the unix socket PREFIX_5001 (the guest connects to CID 2 port 5001);
  - once the guest console says it listens on port 6000: "CONNECT 6000\\n" on PREFIX, expects "OK <port>\\n", then
    1 MiB each way at the same time, shutdown, end of stream;
  - "CONNECT 5000\\n" + "ping" -> "pong" from vsock-pingpong in the guest (what diag10's vsock ping does);
  - "CONNECT 7777\\n" (nothing listens in the guest): the socket is closed without "OK";
  - a line that is not CONNECT: closed;
  - finally "CONNECT 6001" (the guest listens there from the start) tells the guest to finish: the guest reads
    until the host closes, which the host does once it has its "OK", and only then powers off.
Prints one "host: ..." line per check; exits 0 when all passed, 1 otherwise.
Usage: host.py PREFIX CONSOLE_LOG
"""
import os
import re
import select
import socket
import sys
import threading
import time

MIB = 1024 * 1024
prefix, console = sys.argv[1], sys.argv[2]
failures = []


def pattern(start, n):
    return bytes(((i * 7 + (i >> 11)) & 0xFF) for i in range(start, start + n))


def check(ok, what):
    print(("host: ok   " if ok else "host: FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


def echo_server():
    path = prefix + "_5001"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(4)
    srv.settimeout(120)
    try:
        conn, _ = srv.accept()
    except OSError as e:
        check(False, "echo server: no connection from the guest (%s)" % e)
        return
    finally:
        srv.close()
        os.unlink(path)
    total = 0
    with conn:
        while True:
            b = conn.recv(65536)
            if not b:
                break
            total += len(b)
            conn.sendall(b)
    check(total == MIB, "echo server on %s_5001 echoed %d bytes from the guest" % (prefix, total))


def wait_console(line, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with open(console, "rb") as f:
                if line.encode() in f.read():
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def connect(port, timeout=30):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(prefix)
    s.sendall(b"CONNECT %d\n" % port)
    line = b""
    while not line.endswith(b"\n"):
        b = s.recv(1)
        if not b:
            s.close()
            return None, line
        line += b
    return s, line


def main():
    t = threading.Thread(target=echo_server)
    t.start()
    if not wait_console("[guest] listening on port 6000"):
        check(False, "the guest never listened on port 6000")
        t.join()
        return
    s, line = connect(6000)
    check(s is not None and re.fullmatch(rb"OK \d+\n", line) is not None, "CONNECT 6000 answered %r" % line)
    if s:
        sent = got = 0
        s.setblocking(False)
        while got < MIB:
            r, w, _ = select.select([s], [s] if sent < MIB else [], [], 30)
            if not r and not w:
                break
            if w:
                n = s.send(pattern(sent, min(16384, MIB - sent)))
                sent += n
                if sent == MIB:
                    s.shutdown(socket.SHUT_WR)
            if r:
                b = s.recv(65536)
                if not b:
                    break
                if b != pattern(got, len(b)):
                    check(False, "host->guest: echoed bytes differ at %d" % got)
                    break
                got += len(b)
        s.setblocking(True)
        s.settimeout(30)
        rest = s.recv(1)
        check(got == MIB and rest == b"", "host->guest: %d bytes echoed by the guest, then end of stream" % got)
        s.close()
    # vsock-pingpong was started by the guest before it listened on 6000, but may not listen on 5000 yet (its exec
    # and start can lag on a loaded host): a CONNECT refused so far is asked again, up to a deadline
    deadline = time.time() + 120
    s, line = connect(5000)
    while s is None and line == b"" and time.time() < deadline:
        time.sleep(0.2)
        s, line = connect(5000)
    if s:
        s.sendall(b"ping")
        reply = s.recv(16)
        s.close()
        check(reply == b"pong", "CONNECT 5000 + ping: %r" % reply)
    else:
        check(False, "CONNECT 5000: %r" % line)
    s, line = connect(7777)
    check(s is None and line == b"", "CONNECT 7777 (no listener in the guest): closed without OK (%r)" % line)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(prefix)
    s.sendall(b"HELLO 1\n")
    check(s.recv(16) == b"", "a line that is not CONNECT: closed")
    s.close()
    t.join()
    s, line = connect(6001)
    check(s is not None and re.fullmatch(rb"OK \d+\n", line) is not None,
          "CONNECT 6001 (tells the guest to finish): %r" % line)
    if s:
        s.close()


main()
sys.exit(1 if failures else 0)
