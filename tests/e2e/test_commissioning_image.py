"""The commissioning image boots under QEMU (direct -kernel/-initrd, no PXE), gets a lease
from a real DHCP server (busybox udhcpd) in the lab, POSTs its facts to the callback URL from
its kernel command line, and powers off."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from roost.lab import image, qemu
from roost.lab.runner import Lab

pytestmark = [pytest.mark.vm, pytest.mark.netns, pytest.mark.slow]

LISTENER = r"""
import http.server, json, sys
out = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(out, "a") as f:
            f.write(json.dumps({"path": self.path, "type": self.headers.get("Content-Type"),
                                "body": body.decode()}) + "\n")
        self.send_response(200); self.send_header("Content-Length", "3"); self.end_headers()
        self.wfile.write(b"ok\n")
    def log_message(self, *a): pass
http.server.HTTPServer((sys.argv[2], 8080), H).serve_forever()
"""


def _wait_for(path: Path, timeout: float) -> list[dict[str, str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return [json.loads(line) for line in path.read_text().splitlines()]
        time.sleep(0.25)
    return []


def test_image_gets_lease_and_calls_back(
    lab: Lab, commissioning: image.CommissioningImage, tmp_path: Path
) -> None:
    srv = lab.topo.server_ns
    lo, hi = lab.topo.pool()
    conf = tmp_path / "udhcpd.conf"
    conf.write_text(
        f"start {lo}\nend {hi}\ninterface lab0\nlease_file {tmp_path / 'leases'}\n"
        "option subnet 255.255.255.0\noption lease 600\n"
    )
    (tmp_path / "leases").touch()
    lab.spawn("udhcpd", ["busybox", "udhcpd", "-f", str(conf)], srv, tmp_path / "udhcpd.log")
    got = tmp_path / "callbacks.jsonl"
    lab.spawn(
        "listener",
        [sys.executable, "-c", LISTENER, str(got), lab.topo.server_ip],
        srv,
        tmp_path / "listener.log",
    )
    callback = f"http://{lab.topo.server_ip}:8080/boot/callback"
    spec = qemu.GuestSpec(
        index=1,
        nic="e1000",
        kernel=commissioning.kernel,
        initrd=commissioning.initrd,
        append=image.cmdline(callback, "tok-123"),
    )
    guest = lab.start_guest(spec)

    calls = _wait_for(got, timeout=180)
    console = Path(guest.console_log)
    assert calls, f"no callback; console:\n{console.read_text(errors='replace')[-3000:]}"
    call = calls[0]
    assert call["path"] == "/boot/callback/tok-123"
    assert call["type"] == "application/json"
    facts = json.loads(call["body"])
    assert facts["mac"] == spec.mac_address
    assert lo <= facts["ip"] <= hi and facts["ip"].startswith("10.99.0.")
    assert facts["cpu"]["count"] == 1 and facts["cpu"]["model"]
    assert 300 * 2**20 < facts["memory_bytes"] <= 384 * 2**20
    disk = facts["disks"][0]
    assert (disk["name"], disk["size_bytes"]) == ("vda", 8 << 30)
    assert facts["nics"] == [{"name": "eth0", "mac": spec.mac_address}]
    assert facts["system"]["vendor"] == "Roost lab" and facts["firmware"] == "bios"

    # roost.after defaults to poweroff: QEMU exits by itself once the guest is done.
    assert lab.wait_exit(guest, timeout=60), "QEMU still runs after the callback"
    text = console.read_text(errors="replace")
    assert "ROOST: callback ok" in text and "ROOST: powering off" in text
