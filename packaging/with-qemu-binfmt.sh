#!/bin/sh
# with-qemu-binfmt.sh CMD... — runs CMD in a new user+mount namespace whose own binfmt_misc (Linux >= 6.7 gives each
# user namespace its own) sends aarch64 ELF files to qemu-aarch64-static, so aarch64 programs can start other aarch64
# programs (the simulator's stand-ins, the portable launcher's exec). The host's binfmt_misc is not touched.
set -eu
qemu=$(command -v qemu-aarch64-static) || { echo "with-qemu-binfmt: qemu-aarch64-static not installed" >&2; exit 1; }
exec unshare --user --map-root-user --mount --fork sh -c '
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || {
        echo "with-qemu-binfmt: no private binfmt_misc here (needs Linux >= 6.7)" >&2; exit 1; }
    # the magic and mask of an aarch64 ELF executable (as in Debian qemu-user-static binfmt-support files);
    # F: qemu is opened now, so it also works inside a chroot
    printf ":qemu-aarch64:M::\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00:\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:$0:F" \
        > /proc/sys/fs/binfmt_misc/register
    exec "$@"' "$qemu" "$@"
