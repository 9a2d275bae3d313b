#!/usr/bin/env bash
# vhost.cli: nd-vhost-vsock as a program, without a VM — bad options (exit 2, one line), refusing to replace a file
# that is not a socket, replacing a stale socket, a live one refused, vhost-user frames written by hand in Python
# (a bad header ends that connection only; GET_FEATURES / GET_CONFIG answered with the bytes the spec defines),
# --once exiting when the front-end goes, and SIGTERM removing both sockets. Nothing may be left behind.
# Usage: cli-test.sh ND_VHOST_VSOCK
set -uo pipefail
b="$1"
work="$(mktemp -d /tmp/nd-vhost-cli.XXXXXX)"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$work"' EXIT
fails=0
no() { echo "FAIL: $*"; fails=$((fails + 1)); }

# ---- options ----
for args in "" "--socket $work/s" "--socket $work/s --uds-path $work/p --guest-cid 2" \
            "--socket $work/s --uds-path $work/p --guest-cid x" "--socket $work/s --uds-path $work/p --guest-cid 4294967295" \
            "--socket $work/s --uds-path $work/p --bogus" "--socket $work/s --uds-path $work/p extra"; do
  out="$("$b" $args 2>&1)"; rc=$?
  [ $rc -eq 2 ] || no "nd-vhost-vsock $args: exit $rc, expected 2"
  [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] || no "nd-vhost-vsock $args: not one line: $out"
  grep -q '^nd-vhost-vsock: ' <<<"$out" || no "nd-vhost-vsock $args: message without the program name: $out"
done
"$b" --help | grep -q -- '--uds-path PREFIX' || no "--help does not show --uds-path"
"$b" --version | grep -qE '^nd-vhost-vsock [0-9]' || no "--version"

# ---- a regular file where the socket should go: refused, untouched, nothing created ----
echo keep >"$work/file"
out="$("$b" --socket "$work/file" --uds-path "$work/p" 2>&1)"; rc=$?
[ $rc -eq 1 ] || no "socket path is a file: exit $rc, expected 1"
grep -q 'exists and is not a socket' <<<"$out" || no "socket path is a file: message: $out"
[ "$(cat "$work/file")" = keep ] || no "the file was changed"
[ ! -e "$work/p" ] || no "the prefix socket was created although start-up failed"
out="$("$b" --socket "$work/s" --uds-path "$work/file" 2>&1)"; rc=$?
[ $rc -eq 1 ] && [ ! -e "$work/s" ] || no "prefix is a file: exit $rc, $work/s left: $(ls "$work")"

# ---- a stale socket (no listener) is replaced ----
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$work/s"
[ -S "$work/s" ] || no "could not make a stale socket"
"$b" --socket "$work/s" --uds-path "$work/p" --log "$work/log1" &
pid=$!; pids+=($pid)
# every wait is for a condition, up to 30 s (a loaded machine), and ends as soon as it holds
for _ in $(seq 600); do grep -q listening "$work/log1" 2>/dev/null && break; sleep 0.05; done
grep -q "listening on $work/s (vhost-user) and $work/p" "$work/log1" || no "did not start over a stale socket: $(cat "$work/log1")"
# ---- a second instance on the same live socket: refused, the first one's socket stays ----
out="$("$b" --socket "$work/s" --uds-path "$work/p2" 2>&1)"; rc=$?
[ $rc -eq 1 ] && grep -q 'another program is listening there' <<<"$out" || no "second instance: $rc $out"
[ -S "$work/s" ] || no "the second instance removed the first one's socket"

# ---- vhost-user frames by hand (QEMU docs/interop/vhost-user.rst) ----
python3 - "$work/s" <<'EOF' || fails=$((fails + 1))
import socket, struct, sys
path = sys.argv[1]
def conn():
    s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(path); return s
def recv_all(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c: break
        b += c
    return b
# version 2: the backend drops this connection (no reply)
s = conn(); s.sendall(struct.pack("<III", 1, 2, 0)); assert s.recv(64) == b"", "bad version answered"; s.close()
# oversized payload announced: dropped
s = conn(); s.sendall(struct.pack("<III", 5, 1, 1 << 20)); assert s.recv(64) == b"", "huge size answered"; s.close()
# a real exchange: GET_FEATURES -> VERSION_1 (bit 32) | PROTOCOL_FEATURES (bit 30)
s = conn()
s.sendall(struct.pack("<III", 1, 1, 0))
req, flags, size = struct.unpack("<III", recv_all(s, 12))
feat, = struct.unpack("<Q", recv_all(s, size))
assert (req, flags, size) == (1, 5, 8), (req, flags, size)
assert feat == (1 << 32) | (1 << 30), hex(feat)
# GET_PROTOCOL_FEATURES -> REPLY_ACK (3) | CONFIG (9)
s.sendall(struct.pack("<III", 15, 1, 0))
hdr = struct.unpack("<III", recv_all(s, 12)); pf, = struct.unpack("<Q", recv_all(s, 8))
assert pf == (1 << 3) | (1 << 9), hex(pf)
s.sendall(struct.pack("<IIIQ", 16, 1, 8, pf))  # SET_PROTOCOL_FEATURES
# SET_VRING_NUM 3 with need_reply: an ack of 1 (error), connection kept
s.sendall(struct.pack("<IIIII", 8, 1 | 8, 8, 0, 3))
hdr = struct.unpack("<III", recv_all(s, 12)); ack, = struct.unpack("<Q", recv_all(s, 8))
assert hdr == (8, 5, 8) and ack == 1, (hdr, ack)
# GET_CONFIG {offset 0, size 8, flags 0} -> le64 guest CID 16
s.sendall(struct.pack("<IIIIII", 24, 1, 20, 0, 8, 0) + bytes(8))
hdr = struct.unpack("<III", recv_all(s, 12)); body = recv_all(s, hdr[2])
assert hdr == (24, 5, 20) and struct.unpack("<IIIQ", body) == (0, 8, 0, 16), (hdr, body)
s.close()
print("vhost-user frames: ok")
EOF
kill -0 $pid 2>/dev/null || no "the backend died on bad frames"
grep -q 'vhost-user: message 1 has version 2 (expected 1); closing the connection' "$work/log1" || no "no line for the bad version"
grep -q 'SET_MEM_TABLE payload of 1048576 bytes (at most 4096); closing the connection' "$work/log1" || no "no line for the huge size"
grep -q 'SET_VRING_NUM 3 (a power of two up to 32768)' "$work/log1" || no "no line for SET_VRING_NUM 3"

# ---- SIGTERM: exit 0, both sockets gone ----
kill -TERM $pid; wait $pid; rc=$?
[ $rc -eq 0 ] || no "SIGTERM: exit $rc"
[ ! -e "$work/s" ] && [ ! -e "$work/p" ] || no "SIGTERM left sockets: $(ls "$work")"
grep -q 'signal 15: exiting' "$work/log1" || no "no line for SIGTERM"

# ---- --once: exits 0 when the front-end disconnects ----
"$b" --socket "$work/s" --uds-path "$work/p" --once --log "$work/log2" &
pid=$!; pids+=($pid)
# listening (said once both sockets listen), not only bound: a connect between bind and listen is refused
for _ in $(seq 600); do grep -q listening "$work/log2" 2>/dev/null && break; sleep 0.05; done
python3 -c 'import socket,sys,struct; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(struct.pack("<III",3,1,0)); s.close()' "$work/s"
for _ in $(seq 600); do kill -0 $pid 2>/dev/null || break; sleep 0.05; done
if kill -0 $pid 2>/dev/null; then no "--once: still running after the front-end left"; else wait $pid || no "--once: exit $?"; fi
[ ! -e "$work/s" ] && [ ! -e "$work/p" ] || no "--once left sockets: $(ls "$work")"
grep -q 'QEMU disconnected' "$work/log2" || no "--once: no disconnect line"

[ $fails -eq 0 ] && echo "vhost.cli: PASS" || echo "vhost.cli: $fails failure(s)"
[ $fails -eq 0 ]
