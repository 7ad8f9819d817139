#!/usr/bin/env bash
# Installs what tools/powercut_fs.py (the power-loss test file system driven by
# tools/power_loss.py) needs on a fresh Debian 12 machine, as root: libfuse 2's headers and
# pkg-config (from Debian) to build llfuse (from PyPI) for the python3 on PATH, and pika for
# the workload. Idempotent and quiet: it installs only what is missing. Mounting needs
# /dev/fuse; as root no fusermount helper is needed (libfuse mounts with mount(2), the
# driver unmounts with umount(8)).
set -euo pipefail

if [ ! -e /dev/fuse ]; then
    modprobe fuse 2>/dev/null || mknod -m 0666 /dev/fuse c 10 229
fi

missing=()
[ -e /usr/include/fuse/fuse_lowlevel.h ] || missing+=(libfuse-dev)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v gcc >/dev/null || missing+=(gcc)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! python3 -c 'import llfuse' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore llfuse
fi
if ! python3 -c 'import pika' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore pika
fi
