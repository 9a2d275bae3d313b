#!/usr/bin/env bash
# The nd-vhost-vsock end-to-end test: Debian's QEMU (7.2 here; -accel tcg) boots Debian's cloud kernel with a
# vhost-user-vsock-pci device whose backend is nd-vhost-vsock, guest RAM in a shared memfd as vhost-user requires.
# The initramfs's rdinit is tests/vhost/vhostguest (heartbeat, guest->host and host->guest streams of 1 MiB, a refused
# port, vsock-pingpong); tests/vhost/host.py is the host side (echo server on PREFIX_5001, CONNECT clients on PREFIX).
# Checked here: qemu's exit status (isa-debug-exit: 33 = the guest passed), host.py's checks, the backend's log
# (heartbeat answered, RST for the refused port), and that the backend exits by itself when QEMU goes (--once),
# leaving no process and no socket file.
# Exit 0 pass, 1 fail, 77 skip (qemu or the kernel missing).
# Usage: run-qemu-test.sh ND_VHOST_VSOCK VHOSTGUEST VSOCK_PINGPONG MKINITRAMFS   (kernel cache: $ND_VM_CACHE or tests/vm/cache)
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
backend="$1" guest="$2" pingpong="$3" mkinitramfs="$4"

qemu="$(command -v qemu-system-x86_64 || true)"
[ -n "$qemu" ] || { echo "SKIP: qemu-system-x86_64 is not installed (tools/install-deps.sh installs qemu-system-x86)"; exit 77; }
"$qemu" -device help 2>/dev/null | grep -q '"vhost-user-vsock-pci"' ||
  { echo "SKIP: $qemu has no vhost-user-vsock-pci device"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: python3 missing"; exit 77; }
cache="$("$here/../vm/fetch-kernel.sh" "${ND_VM_CACHE:-$here/../vm/cache}")"
rc=$?
[ $rc -eq 77 ] && { echo "SKIP: the Debian cloud kernel cannot be fetched (see above)"; exit 77; }
[ $rc -eq 0 ] || { echo "FAIL: fetch-kernel.sh exited $rc"; exit 1; }
echo "kernel: $(cat "$cache/VERSION"); $("$qemu" --version | head -n 1)"

# short paths: a unix socket path holds at most 107 bytes
work="$(mktemp -d /tmp/nd-vhost.XXXXXX)"
bpid="" hpid=""
cleanup() {
  for p in $hpid $bpid; do kill "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT

mods=()
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci vsock \
         vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport; do
  mods+=("file:/lib/modules/$m.ko=$cache/modules/$m.ko")
done
"$mkinitramfs" "$work/initramfs.cpio" dir:/dev nod:/dev/console=c:5:1 dir:/lib dir:/lib/modules \
  "file:/vhostguest=$guest" "file:/vsock-pingpong=$pingpong" "${mods[@]}" || { echo "FAIL: mkinitramfs"; exit 1; }

sock="$work/vhost.sock" prefix="$work/v"
"$backend" --socket "$sock" --uds-path "$prefix" --guest-cid 16 --once --log "$work/backend.log" &
bpid=$!
for _ in $(seq 100); do [ -S "$sock" ] && [ -S "$prefix" ] && break; sleep 0.05; done
[ -S "$sock" ] || { echo "FAIL: the backend did not create $sock"; cat "$work/backend.log"; exit 1; }
: >"$work/console.log"
python3 "$here/host.py" "$prefix" "$work/console.log" >"$work/host.out" 2>&1 &
hpid=$!

t0=$(date +%s.%N)
timeout -k 5 150 "$qemu" -accel tcg -m 256 -smp 1 -nodefaults -display none -no-reboot -monitor none \
  -serial "file:$work/console.log" -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
  -object memory-backend-memfd,id=mem,size=256M,share=on -machine memory-backend=mem \
  -chardev "socket,id=vsock0,path=$sock" -device vhost-user-vsock-pci,chardev=vsock0 \
  -kernel "$cache/vmlinuz" -initrd "$work/initramfs.cpio" \
  -append "console=ttyS0 rdinit=/vhostguest panic=-1 quiet loglevel=3" </dev/null
qrc=$?
t1=$(date +%s.%N)
wait "$hpid"; hrc=$?; hpid=""
# --once: the backend exits by itself when QEMU has gone
for _ in $(seq 100); do kill -0 "$bpid" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$bpid" 2>/dev/null; then brc=running; else wait "$bpid"; brc=$?; bpid=""; fi

echo "---- guest console ----"; tr -d '\r' <"$work/console.log"; echo "-----------------------"
echo "---- host.py ----"; cat "$work/host.out"; echo "-----------------"
echo "---- backend log ----"; cat "$work/backend.log"; echo "---------------------"
awk -v q="$qrc" -v b="$t0" -v c="$t1" 'BEGIN { printf "qemu exit status %d; boot to power-off %.1f s\n", q, c - b }'

fails=0
no() { echo "FAIL: $*"; fails=$((fails + 1)); }
[ $qrc -eq 33 ] || no "qemu exit status $qrc, expected 33 (isa-debug-exit PASS from the guest)"
[ $hrc -eq 0 ] || no "host.py failed ($hrc)"
con="$(tr -d '\r' <"$work/console.log")"
grep -qx '\[guest\] local CID 16' <<<"$con" || no "the guest's CID is not 16 (the backend's GET_CONFIG)"
grep -qx '\[guest\] heartbeat answered (then end of stream)' <<<"$con" || no "heartbeat not answered, or no end of stream"
grep -qx '\[guest\] connect CID 2 port 5999: Connection reset by peer' <<<"$con" || no "port without listener: no RST"
grep -qE '^\[guest\] host connection from CID 3 port [0-9]+$' <<<"$con" || no "host->guest connection not from CID 3"
grep -qx '\[enclave\] received: "ping"' <<<"$con" || no "vsock-pingpong did not get the ping"
grep -qx '\[guest\] PASS' <<<"$con" || no "the guest did not pass"
log="$(cat "$work/backend.log")"
grep -q '^nd-vhost-vsock: heartbeat: answered 0xb7 from CID 16 port [0-9]* (enclave ready)$' <<<"$log" || no "backend log: no heartbeat line"
grep -qE "^nd-vhost-vsock: guest port [0-9]+ -> CID 2 port 5999: ${prefix}_5999: connect: .*; RST$" <<<"$log" ||
  no "backend log: no RST line for port 5999"
grep -q '^nd-vhost-vsock: QEMU disconnected (1 heartbeat(s) answered' <<<"$log" || no "backend log: no disconnect line"
[ "$brc" = 0 ] || no "the backend did not exit 0 after QEMU went (--once): $brc"
[ ! -e "$sock" ] || no "$sock left behind"
[ ! -e "$prefix" ] || no "$prefix left behind"
left="$(ls "$work" | grep -v -E '^(initramfs.cpio|console.log|backend.log|host.out)$' || true)"
[ -z "$left" ] || no "files left in the work directory: $left"
[ $fails -eq 0 ] && echo "vhost.qemu: PASS" || echo "vhost.qemu: $fails failure(s)"
[ $fails -eq 0 ]
