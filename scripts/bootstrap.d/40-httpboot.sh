#!/usr/bin/env bash
# The boot service imports Debian's iPXE binaries into its store at first start (undionly.kpxe
# for BIOS, ipxe.efi and snponly.efi for x86-64 UEFI). The ipxe package comes from
# scripts/debian-packages.txt; this step only checks that it put them where the service reads
# them, so a changed package layout fails here rather than at a node's first boot.
set -euo pipefail
for f in undionly.kpxe ipxe.efi snponly.efi; do
    if [ ! -s "/usr/lib/ipxe/$f" ]; then
        echo "bootstrap: /usr/lib/ipxe/$f missing; install Debian's ipxe package or set boot.ipxe_dir" >&2
        exit 1
    fi
done
