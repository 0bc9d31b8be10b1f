"""A libcloud ``NodeDriver`` for the Hetzner Cloud API, which libcloud 3.9 does not ship.

It follows libcloud's own driver pattern (a ``ConnectionKey`` that adds the bearer token, a
``JsonResponse`` that raises on errors) so the ``libcloud`` power driver treats Hetzner like
every other provider. Only what power control needs is implemented, from the Hetzner Cloud
API reference, section "Servers": list (paginated), get, create, delete, and the
``poweron``/``poweroff``/``reset`` actions.
"""

# libcloud types Connection.request without annotations.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import json
from typing import Any

from libcloud.common.base import ConnectionKey, JsonResponse
from libcloud.common.types import InvalidCredsError
from libcloud.compute.base import Node, NodeDriver, NodeImage, NodeLocation, NodeSize
from libcloud.compute.types import NodeState

NODE_STATE_MAP: dict[str, NodeState] = {
    "running": NodeState.RUNNING,
    "off": NodeState.STOPPED,
    "initializing": NodeState.PENDING,
    "starting": NodeState.STARTING,
    "stopping": NodeState.STOPPING,
    "rebuilding": NodeState.PENDING,
    "migrating": NodeState.PENDING,
    "deleting": NodeState.PENDING,
    "unknown": NodeState.UNKNOWN,
}
"""Hetzner ``server.status`` values to libcloud ``NodeState``."""


class HetznerResponse(JsonResponse):
    def success(self) -> bool:
        return 200 <= int(self.status) < 300

    def parse_error(self) -> str:
        # Errors are {"error": {"code": "...", "message": "..."}} (API reference, "Errors").
        try:
            error = json.loads(str(self.body))["error"]
            message = f"{error['code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            message = str(self.body)
        if int(self.status) == 401:
            raise InvalidCredsError(message)
        return message


class HetznerConnection(ConnectionKey):
    host = "api.hetzner.cloud"
    responseCls = HetznerResponse

    def add_default_headers(self, headers: dict[str, str]) -> dict[str, str]:
        headers["Authorization"] = f"Bearer {self.key}"
        headers["Content-Type"] = "application/json"
        return headers


class HetznerNodeDriver(NodeDriver):
    type = "hetzner"
    name = "Hetzner Cloud"
    website = "https://www.hetzner.com/cloud"
    connectionCls = HetznerConnection

    def _to_node(self, server: dict[str, Any]) -> Node:
        net = server.get("public_net") or {}
        public = [a["ip"] for a in (net.get("ipv4"), net.get("ipv6")) if a and a.get("ip")]
        private = [p["ip"] for p in server.get("private_net") or [] if p.get("ip")]
        return Node(
            id=str(server["id"]),
            name=server["name"],
            state=NODE_STATE_MAP.get(server.get("status", ""), NodeState.UNKNOWN),
            public_ips=public,
            private_ips=private,
            driver=self,
            extra={
                "status": server.get("status"),
                "server_type": (server.get("server_type") or {}).get("name"),
            },
        )

    def list_nodes(self) -> list[Node]:
        nodes: list[Node] = []
        page: int | None = 1
        while page:
            body = self.connection.request(
                "/v1/servers", params={"page": page, "per_page": 50}
            ).object
            nodes.extend(self._to_node(s) for s in body["servers"])
            page = ((body.get("meta") or {}).get("pagination") or {}).get("next_page")
        return nodes

    def ex_get_node(self, node_id: str) -> Node:
        return self._to_node(self.connection.request(f"/v1/servers/{node_id}").object["server"])

    def create_node(
        self,
        name: str,
        size: NodeSize,
        image: NodeImage,
        location: NodeLocation | None = None,
        auth: Any = None,
        ex_user_data: str | None = None,
    ) -> Node:
        data: dict[str, Any] = {"name": name, "server_type": size.id, "image": image.id}
        if location is not None:
            data["location"] = location.id
        if ex_user_data is not None:
            data["user_data"] = ex_user_data
        body = self.connection.request("/v1/servers", method="POST", data=json.dumps(data))
        return self._to_node(body.object["server"])

    def _action(self, node: Node, action: str) -> bool:
        self.connection.request(f"/v1/servers/{node.id}/actions/{action}", method="POST")
        return True

    def start_node(self, node: Node) -> bool:
        return self._action(node, "poweron")

    def stop_node(self, node: Node) -> bool:
        return self._action(node, "poweroff")

    def reboot_node(self, node: Node) -> bool:
        return self._action(node, "reset")

    def destroy_node(self, node: Node) -> bool:
        self.connection.request(f"/v1/servers/{node.id}", method="DELETE")
        return True
