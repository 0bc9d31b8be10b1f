#!/usr/bin/env bash
# Build Roost's commissioning image from Debian packages: a kernel from linux-image-amd64 and a
# busybox-static initramfs whose /init (src/roost/lab/commissioning/init) gets a lease, collects
# facts and calls Roost back. Output, git-ignored:  var/images/commissioning/{vmlinuz,initrd.img,
# manifest.json}. Idempotent: skipped when the kernel version and the sources it is built from
# are unchanged (a stamp of their hashes). The kernel .deb is only unpacked (dpkg -x), never
# installed on this machine. Env: ROOT (repo), IMAGE_DIR (output), CACHE_DIR (downloads).
set -euo pipefail
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
OUT=${IMAGE_DIR:-$ROOT/var/images/commissioning}
CACHE=${CACHE_DIR:-$ROOT/var/cache/commissioning}
SRC=$ROOT/src/roost/lab/commissioning
mkdir -p "$OUT" "$CACHE"

# linux-image-amd64 is a metapackage: the real image package is its first versioned dependency.
kpkg() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}'; }
KPKG=$(kpkg)
if [ -z "$KPKG" ]; then
    apt-get -o DPkg::Lock::Timeout=900 -q update >/dev/null
    KPKG=$(kpkg)
fi
[ -n "$KPKG" ] || { echo "commissioning image: apt knows no linux-image-amd64" >&2; exit 1; }
KVER=${KPKG#linux-image-}

# busybox-static conflicts with the busybox package the tests use, so it is unpacked, not installed.
BBVER=$(apt-cache policy busybox-static 2>/dev/null | awk '/Candidate:/{print $2}')
[ -n "$BBVER" ] && [ "$BBVER" != "(none)" ] || { echo "commissioning image: apt knows no busybox-static" >&2; exit 1; }

STAMP=$(cat "$0" "$SRC/init" "$SRC/udhcpc.script" | sha256sum | cut -c1-16)-$KVER-$BBVER
if [ -f "$OUT/vmlinuz" ] && [ -f "$OUT/initrd.img" ] && [ "$(cat "$OUT/.stamp" 2>/dev/null)" = "$STAMP" ]; then
    exit 0
fi
echo "commissioning image: building from $KPKG"

cd "$CACHE"
KROOT=$CACHE/kernel-$KVER
if [ ! -f "$KROOT/boot/vmlinuz-$KVER" ]; then
    ls "${KPKG}"_*.deb >/dev/null 2>&1 || rm -f linux-image-*.deb
    rm -rf "$CACHE"/kernel-*
    # apt-get download as root warns that it runs unsandboxed; harmless here.
    ls "${KPKG}"_*.deb >/dev/null 2>&1 ||
        apt-get download "$KPKG" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true
    dpkg -x "${KPKG}"_*.deb "$KROOT.tmp"
    mv "$KROOT.tmp" "$KROOT"
fi
BBDIR=$CACHE/busybox-static-${BBVER//:/_}
if [ ! -x "$BBDIR/bin/busybox" ]; then
    rm -rf "$CACHE"/busybox-static*
    apt-get download busybox-static 2>&1 | grep -v '^W: Download is performed unsandboxed' || true
    dpkg -x busybox-static_*.deb "$BBDIR"
    rm -f busybox-static_*.deb
fi
MODDIR=$KROOT/lib/modules/$KVER
# The .deb ships no modules.dep (its postinst runs depmod): make one to read dependencies from.
[ -f "$MODDIR/modules.dep" ] || depmod -b "$KROOT" "$KVER"

R=$(mktemp -d "$CACHE/initramfs.XXXXXX")
trap 'rm -rf "$R"' EXIT
mkdir -p "$R"/{bin,proc,sys,dev,tmp,etc,lib/modules,usr/share/udhcpc}
cp "$BBDIR/bin/busybox" "$R/bin/busybox"   # static: needs no libraries
install -m 0755 "$SRC/init" "$R/init"
install -m 0755 "$SRC/udhcpc.script" "$R/usr/share/udhcpc/default.script"

# Drivers the image carries (Debian builds them all as modules): the lab's NICs and disks
# (virtio, e1000, e1000e) and the common server NICs and disk controllers. No firmware
# blobs: a NIC that needs one (some tg3/bnx2x, ice) will not come up.
DRIVERS="virtio_pci virtio_net virtio_blk e1000 e1000e igb igc ixgbe i40e r8169 tg3 bnxt_en
         nvme ahci sd_mod"
# Per driver, <driver>.deps lists its modules in load order: modules.dep lists a module's
# dependencies deepest last, so they load in reverse order, then the module itself.
# <bus>.alias maps the driver's modalias globs (modinfo) to it, so /init loads by device.
copy_mod() {
    local f
    f=$(find "$MODDIR/kernel" -name "$1.ko*" | head -n1)
    [ -n "$f" ] || { echo "commissioning image: module $1 not in $KPKG" >&2; exit 1; }
    case "$f" in
        *.ko) cp "$f" "$R/lib/modules/$1.ko" ;;
        *.ko.xz) xz -dc "$f" > "$R/lib/modules/$1.ko" ;;
        *.ko.zst) zstd -dcq "$f" > "$R/lib/modules/$1.ko" ;;
    esac
}
deps_of() {
    awk -v m="/$1.ko" 'index($1, m ":") || index($1, m ".xz:") || index($1, m ".zst:") {
        for (i = NF; i > 1; i--) { n = $i; sub(/.*\//, "", n); sub(/\.ko.*/, "", n); print n } }' \
        "$MODDIR/modules.dep"
}
: > "$R/lib/modules/pci.alias"
: > "$R/lib/modules/virtio.alias"
for drv in $DRIVERS; do
    order=()
    for d in $(deps_of "$drv") "$drv"; do
        [[ " ${order[*]} " == *" $d "* ]] || order+=("$d")
    done
    printf '%s\n' "${order[@]}" > "$R/lib/modules/$drv.deps"
    for m in "${order[@]}"; do [ -f "$R/lib/modules/$m.ko" ] || copy_mod "$m"; done
    modinfo -F alias "$R/lib/modules/$drv.ko" | while read -r alias; do
        case "$alias" in
            pci:*) echo "$alias $drv" >> "$R/lib/modules/pci.alias" ;;
            virtio:*) echo "$alias $drv" >> "$R/lib/modules/virtio.alias" ;;
        esac
    done
done

cp "$KROOT/boot/vmlinuz-$KVER" "$OUT/vmlinuz.tmp"
(cd "$R" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | gzip -9) > "$OUT/initrd.img.tmp"
mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
mv "$OUT/initrd.img.tmp" "$OUT/initrd.img"
cat > "$OUT/manifest.json" <<JSON
{"kernel_package": "$KPKG", "kernel_version": "$KVER",
 "kernel_sha256": "$(sha256sum "$OUT/vmlinuz" | cut -d' ' -f1)",
 "initrd_sha256": "$(sha256sum "$OUT/initrd.img" | cut -d' ' -f1)",
 "busybox_static": "$BBVER",
 "cmdline": "console=ttyS0 quiet roost.callback=<url> roost.token=<token> roost.after=poweroff"}
JSON
echo "$STAMP" > "$OUT/.stamp"
rm -rf "$KROOT"   # 400 MB of modules; a rebuild unpacks the .deb again
echo "commissioning image: $(du -h "$OUT/vmlinuz" | cut -f1) kernel $KVER, $(du -h "$OUT/initrd.img" | cut -f1) initrd in $OUT"
