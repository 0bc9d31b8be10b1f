#!/usr/bin/env bash
# tftpd-hpa's in.tftpd for bench/tftp.py. Debian's tftpd-hpa and atftpd packages conflict (both own
# /usr/sbin/in.tftpd; installing one removes the other), so tftpd-hpa is unpacked with `dpkg -x`
# into .tools/tftpd-hpa instead of being installed. Idempotent: does nothing once unpacked.
set -euo pipefail
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
DEST=$ROOT/.tools/tftpd-hpa
[ -x "$DEST/usr/sbin/in.tftpd" ] && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download -q tftpd-hpa >/dev/null)
rm -rf "$DEST"
mkdir -p "$DEST"
dpkg -x "$tmp"/tftpd-hpa_*.deb "$DEST"
echo "bootstrap: tftpd-hpa unpacked to $DEST"
