"""Enrollment and the certificate authority's public face.

``POST /enroll`` is authenticated by the one-time enrollment token in its body, not by an API
token; ``POST /enroll/renew`` by the node's current certificate. ``/pki/ca.pem`` and
``/pki/crl.pem`` answer without authentication: the CA certificate and the CRL are public by
design (nodes fetch them before they hold any credential) and contain no secret.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from roost.api.deps import Operator, RuntimeDep
from roost.api.nodeauth import NodeDep
from roost.db.models import utcnow
from roost.inventory.views import Facts, check_facts
from roost.pki import enroll, revocation, tokens
from roost.pki.tokens import TokenRefused

router = APIRouter(prefix="/enroll", tags=["enroll"])
pki = APIRouter(prefix="/pki", tags=["enroll"])

PEM = "application/x-pem-file"


class EnrollIn(BaseModel):
    token: str = Field(min_length=1, max_length=200, description="the one-time enrollment token")
    mac: str = Field(description="MAC of the interface the node booted from")
    ip: str | None = None
    facts: Facts = Field(default_factory=dict, description="hardware facts (≤ 256 KiB JSON)")
    csr: str | None = Field(
        default=None, max_length=16_384, description="PEM PKCS #10 CSR (EC P-256/P-384, Ed25519)"
    )


class CallbackIn(BaseModel):
    """A facts document that names its own interface (the commissioning image's format)."""

    model_config = ConfigDict(extra="allow")
    mac: str
    ip: str | None = None
    csr: str | None = Field(default=None, max_length=16_384)

    @model_validator(mode="after")
    def _bounded(self) -> CallbackIn:
        check_facts(self.model_dump())
        return self


class EnrollOut(BaseModel):
    node: int
    site: str
    state: str
    certificate: str | None = Field(description="PEM, when a CSR was sent")
    ca: str = Field(description="PEM of the Roost CA, to pin")


class RenewIn(BaseModel):
    csr: str = Field(max_length=16_384)


class RenewOut(BaseModel):
    certificate: str


class TokenIn(BaseModel):
    node: str | None = Field(default=None, description="node id, MAC or hostname")
    mac: str | None = Field(default=None, description="a MAC that may not be a node yet")
    site: str | None = None
    ttl: str | int | None = Field(default=None, description="seconds or 90s, 30m, 1h, 2d")


class TokenOut(BaseModel):
    id: str
    node_id: int | None
    mac: str | None
    site: str | None
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    used_by: int | None = None


class TokenCreated(TokenOut):
    token: str = Field(description="the secret; shown only once")


_PENDING: dict[int | str, dict[str, Any]] = {
    202: {"model": EnrollOut, "description": "waits for an operator's approval"}
}


@router.post(
    "", response_model=EnrollOut, summary="Enroll with a one-time token", responses=_PENDING
)
async def enroll_(
    body: EnrollIn, request: Request, response: Response, runtime: RuntimeDep
) -> EnrollOut:
    """With ``enroll.approve`` a minted token's enrollment answers 202 (state ``pending``);
    the node sends the same request again after approval to collect its certificate."""
    source = request.client.host if request.client else None
    try:
        done = await enroll.enroll(
            runtime, body.token, body.mac, body.facts, body.csr, body.ip, source=source
        )
    except TokenRefused:
        raise HTTPException(
            401, "enrollment token refused: unknown, already used, expired, or not for this node"
        ) from None
    if done.pending:
        response.status_code = 202
    return EnrollOut(
        node=done.node.id,
        site=done.node.site,
        state=done.node.state,
        certificate=done.certificate,
        ca=done.ca,
    )


@router.post("/renew", response_model=RenewOut, summary="Renew the calling node's certificate")
async def renew(body: RenewIn, runtime: RuntimeDep, me: NodeDep) -> RenewOut:
    return RenewOut(certificate=await enroll.renew(runtime, me.node_id, body.csr))


@router.post("/tokens", response_model=TokenCreated, status_code=201)
async def create_token(body: TokenIn, runtime: RuntimeDep, who: Operator) -> TokenCreated:
    secret, row = await tokens.create_for(
        runtime, node=body.node, mac=body.mac, site=body.site, ttl=body.ttl, scope=who.sites
    )
    return TokenCreated(
        **TokenOut.model_validate(row, from_attributes=True).model_dump(), token=secret
    )


@router.get("/tokens", response_model=list[TokenOut], summary="Enrollment tokens (no secrets)")
async def list_tokens(runtime: RuntimeDep, who: Operator) -> list[TokenOut]:
    async with runtime.db.session() as s:
        rows = await tokens.list_tokens(s)
    return [
        TokenOut.model_validate(r, from_attributes=True)
        for r in rows
        if who.sites is None or r.site in who.sites
    ]


@router.post(
    "/{token}",
    response_model=EnrollOut,
    summary="Enroll with the token in the path and the facts document as the body",
    responses=_PENDING,
)
async def enroll_by_path(
    token: str, body: CallbackIn, request: Request, response: Response, runtime: RuntimeDep
) -> EnrollOut:
    """What a commissioning image does with ``roost.callback=<api>/api/v1/enroll`` and
    ``roost.token=<token>``: POST its facts, which carry ``mac`` and ``ip``, to ``…/<token>``."""
    facts = body.model_dump(exclude={"mac", "ip", "csr"})
    return await enroll_(
        EnrollIn(token=token, mac=body.mac, ip=body.ip or None, facts=facts, csr=body.csr),
        request,
        response,
        runtime,
    )


@pki.get("/ca.pem", response_class=Response, summary="The CA certificate (public)")
async def ca_pem(runtime: RuntimeDep) -> Response:
    return Response(enroll.authority(runtime.settings).cert_pem, media_type=PEM)


@pki.get("/crl.pem", response_class=Response, summary="The certificate revocation list (public)")
async def crl_pem(runtime: RuntimeDep) -> Response:
    ca = enroll.authority(runtime.settings)
    async with runtime.db.session() as s:
        body = await revocation.crl_pem(s, ca, utcnow())
    return Response(body, media_type=PEM)
