"""API tokens: create, list, revoke (admin only, and only inside the caller's own scope)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import AwareDatetime, BaseModel, Field

from roost import auth
from roost.api.deps import Admin, RuntimeDep
from roost.auth import Role, SiteName

router = APIRouter(prefix="/tokens", tags=["tokens"])


class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    role: Role = Field(default=Role.viewer, description="at most the caller's own role")
    sites: list[SiteName] | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="limit the token to these sites (a subset of the caller's); "
        "absent: every site, which only an unscoped token may grant",
    )
    expires_at: AwareDatetime | None = Field(
        default=None, description="a future time with a time zone, e.g. 2030-01-01T00:00:00Z"
    )


class TokenOut(BaseModel):
    id: str
    name: str
    role: str
    sites: list[str] | None
    created_at: datetime | None = None
    expires_at: datetime | None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


class TokenCreated(TokenOut):
    token: str = Field(description="the secret; shown only once")


@router.post("", status_code=201, response_model=TokenCreated)
async def create(body: TokenCreate, runtime: RuntimeDep, who: Admin) -> TokenCreated:
    sites = list(dict.fromkeys(body.sites)) if body.sites is not None else None
    who.check_grant(body.role, sites)
    issued = await auth.create_token(runtime.db, body.name, body.role, sites, body.expires_at)
    await runtime.bus.publish(
        "token.created", issued.id, {"name": issued.name, "role": issued.role, "by": who.token_id}
    )
    return TokenCreated(
        id=issued.id,
        name=issued.name,
        role=issued.role,
        sites=issued.sites,
        expires_at=issued.expires_at,
        token=issued.secret,
    )


@router.get("", response_model=list[TokenOut])
async def list_(runtime: RuntimeDep, who: Admin) -> list[TokenOut]:
    """The tokens inside the caller's scope (all of them for an unscoped token)."""
    return [
        TokenOut.model_validate(r, from_attributes=True)
        for r in await auth.list_tokens(runtime.db, who)
    ]


@router.delete("/{token_id}", response_model=TokenOut)
async def revoke(token_id: str, runtime: RuntimeDep, who: Admin) -> TokenOut:
    row = await auth.revoke_token(runtime.db, token_id, who)
    await runtime.bus.publish("token.revoked", token_id, {"by": who.token_id})
    return TokenOut.model_validate(row, from_attributes=True)
