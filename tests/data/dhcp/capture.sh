#!/bin/bash
# capture.sh - how the byte-exact client packets in this directory were captured (run once, as
# root; the result is committed, the tests never run this).
#
# Two namespaces joined by a veth pair; dnsmasq in rdh-caps hands out 10.99.0.0/24 so that the
# clients go through a whole DORA; tcpdump in rdh-caps writes every DHCP packet to a pcap and
# extract.py writes each client packet's UDP payload to <client>-<n>-<type>.bin. A QEMU guest's
# iPXE ROM is captured the same way (see the end).
set -euo pipefail
cd "$(dirname "$0")"
OUT=$(mktemp -d)
cleanup() {
    for pid in ${PIDS:-}; do kill "$pid" 2>/dev/null || true; done
    ip netns del rdh-caps 2>/dev/null || true
    ip netns del rdh-capc 2>/dev/null || true
    rm -rf "$OUT"
}
trap cleanup EXIT
ip netns add rdh-caps
ip netns add rdh-capc
ip link add rdhcap0 netns rdh-caps type veth peer name rdhcap1 netns rdh-capc
ip -n rdh-caps addr add 10.99.0.1/24 dev rdhcap0
ip -n rdh-caps link set rdhcap0 up
ip -n rdh-capc link set rdhcap1 address 52:54:00:12:34:56 up
ip -n rdh-caps link set lo up
ip -n rdh-capc link set lo up
ip netns exec rdh-caps dnsmasq --keep-in-foreground --port=0 --interface=rdhcap0 \
    --bind-interfaces --dhcp-range=10.99.0.100,10.99.0.200,1h --dhcp-leasefile="$OUT/leases" \
    --pid-file="$OUT/dnsmasq.pid" --user=root &
PIDS="$!"
ip netns exec rdh-caps tcpdump -i rdhcap0 -U -w "$OUT/cap.pcap" -s 0 'udp port 67 or udp port 68' \
    2>/dev/null &
PIDS="$PIDS $!"
sleep 1
# ISC dhclient: obtain (DISCOVER, REQUEST in SELECTING), then release (-r)
printf 'send host-name "roost-capture";\n' > "$OUT/dhclient.conf"
ip netns exec rdh-capc dhclient -4 -v -1 -sf /bin/true -pf "$OUT/dhclient.pid" \
    -lf "$OUT/dhclient.leases" -cf "$OUT/dhclient.conf" rdhcap1
# the releases are unicast to the server, so the client needs its address on the link
ADDR=$(sed -n 's/.*fixed-address \(.*\);/\1/p' "$OUT/dhclient.leases" | tail -1)
ip -n rdh-capc addr add "$ADDR/24" dev rdhcap1
ip netns exec rdh-capc dhclient -4 -r -sf /bin/true -pf "$OUT/dhclient.pid" \
    -lf "$OUT/dhclient.leases" -cf "$OUT/dhclient.conf" rdhcap1
sleep 0.5
# busybox udhcpc: obtain and release
ip netns exec rdh-capc udhcpc -f -q -n -R -i rdhcap1 -s /bin/true -x hostname:roost-udhcpc \
    -V roost-capture
sleep 1
kill $PIDS; wait 2>/dev/null || true
PIDS=""
python3 extract.py "$OUT/cap.pcap" .

# The iPXE ROM (ipxe-qemu) of a QEMU guest: QEMU's filter-dump writes the guest NIC's frames
# to a pcap; user-mode networking with restrict=on keeps the guest away from any real network
# (its built-in DHCP server answers, so the ROM sends DISCOVER and REQUEST).
timeout 40 qemu-system-x86_64 -nographic -nodefaults -machine accel=tcg -m 128 -serial none \
    -monitor none -netdev user,id=n0,restrict=on \
    -device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:57 \
    -object filter-dump,id=f0,netdev=n0,file="$OUT/ipxe.pcap" -boot n >/dev/null 2>&1 || true
python3 extract.py "$OUT/ipxe.pcap" . ipxe
