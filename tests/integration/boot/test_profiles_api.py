"""Boot profiles, rules and rendered previews over the API, on both databases."""

from __future__ import annotations

import httpx

PROFILE = {
    "description": "commissioning",
    "kernel": "vmlinuz",
    "initrds": ["initrd.img"],
    "cmdline": "console=ttyS0 roost.token={{ token }}",
    "templates": {"user-data": "#cloud-config\nhostname: {{ hostname }}\n"},
}


async def test_profile_and_rule_lifecycle(api: httpx.AsyncClient) -> None:
    names = [p["name"] for p in (await api.get("/api/v1/boot/profiles")).json()]
    assert names == ["local"]
    created = await api.put("/api/v1/boot/profiles/commission", json=PROFILE)
    assert created.status_code == 201
    again = await api.put(
        "/api/v1/boot/profiles/commission", json=PROFILE, headers={"If-None-Match": "*"}
    )
    assert again.status_code == 409 and "exists" in again.json()["detail"]
    changed = await api.put("/api/v1/boot/profiles/commission", json={**PROFILE, "cmdline": "x"})
    assert changed.status_code == 200
    shown = (await api.get("/api/v1/boot/profiles/commission")).json()
    assert shown["cmdline"] == "x" and shown["templates"] == PROFILE["templates"]

    rule = await api.post(
        "/api/v1/boot/rules",
        json={"profile": "commission", "mac": "52-54-00-AA-00-01", "priority": 5},
    )
    assert rule.status_code == 201
    assert rule.json()["mac"] == "52:54:00:aa:00:01"
    catch_all = await api.post("/api/v1/boot/rules", json={"profile": "local"})
    assert [r["id"] for r in (await api.get("/api/v1/boot/rules")).json()] == [
        rule.json()["id"],
        catch_all.json()["id"],
    ]
    busy = await api.delete("/api/v1/boot/profiles/commission")
    assert busy.status_code == 409 and "rule" in busy.json()["detail"]
    assert (await api.delete(f"/api/v1/boot/rules/{rule.json()['id']}")).status_code == 200
    assert (await api.delete("/api/v1/boot/profiles/commission")).status_code == 200
    assert (await api.get("/api/v1/boot/profiles/commission")).status_code == 404


async def test_bad_profiles_and_rules_get_precise_problems(api: httpx.AsyncClient) -> None:
    async def problem(method: str, path: str, body: object) -> tuple[int, str]:
        resp = await api.request(method, path, json=body)
        return resp.status_code, resp.json()["detail"]

    status, detail = await problem(
        "PUT", "/api/v1/boot/profiles/x", {"kernel": "k", "templates": {"ipxe": "{% for %}"}}
    )
    assert status == 422 and "template ipxe: line 1" in detail
    status, detail = await problem("PUT", "/api/v1/boot/profiles/x", {"kernel": "../k"})
    assert status == 422 and "not a boot-file name" in detail
    status, detail = await problem("PUT", "/api/v1/boot/profiles/x", {"cmdline": "quiet"})
    assert status == 422 and "kernel or an ipxe template" in detail
    status, detail = await problem(
        "PUT", "/api/v1/boot/profiles/x", {"kernel": "k", "templates": {"grub": "x"}}
    )
    assert status == 422 and "templates" in detail
    status, detail = await problem("PUT", "/api/v1/boot/profiles/local", PROFILE)
    assert status == 403 and "built in" in detail
    status, detail = await problem("PUT", "/api/v1/boot/profiles/Bad Name", PROFILE)
    assert status == 422 and "profile name" in detail
    status, detail = await problem("POST", "/api/v1/boot/rules", {"profile": "nope"})
    assert status == 404 and "nope" in detail
    status, detail = await problem("POST", "/api/v1/boot/rules", {"profile": "local", "mac": "1"})
    assert status == 422 and "MAC" in detail
    assert (await api.delete("/api/v1/boot/profiles/local")).status_code == 403


async def test_render_preview(api: httpx.AsyncClient) -> None:
    await api.put("/api/v1/boot/profiles/commission", json=PROFILE)
    await api.post("/api/v1/boot/rules", json={"profile": "commission", "arch": "x86_64-efi"})
    base = "http://10.0.0.1:8442"
    efi = await api.get(
        "/api/v1/boot/render/52:54:00:aa:00:01/ipxe",
        params={"arch": "x86_64-efi", "http_base": base},
    )
    assert efi.status_code == 200 and efi.headers["x-roost-profile"] == "commission"
    assert f"kernel {base}/files/vmlinuz initrd=initrd.img console=ttyS0 roost.token=" in efi.text
    bios = await api.get(
        "/api/v1/boot/render/52:54:00:aa:00:02/ipxe", params={"arch": "bios", "http_base": base}
    )
    assert "sanboot --no-describe --drive 0x80" in bios.text
    no_base = await api.get("/api/v1/boot/render/52:54:00:aa:00:01/ipxe")
    assert no_base.status_code == 422 and "boot.public_url" in no_base.json()["detail"]
    missing = await api.get(
        "/api/v1/boot/render/52:54:00:aa:00:02/preseed", params={"http_base": base}
    )
    assert missing.status_code == 404
