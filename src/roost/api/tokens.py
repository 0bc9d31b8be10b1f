"""API tokens: create, list, revoke (admin only)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from roost import auth
from roost.api.deps import Admin, RuntimeDep
from roost.auth import Role

router = APIRouter(prefix="/tokens", tags=["tokens"])


class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    role: Role = Role.viewer
    sites: list[str] | None = Field(default=None, description="limit the token to these sites")
    expires_at: datetime | None = None


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
    issued = await auth.create_token(runtime.db, body.name, body.role, body.sites, body.expires_at)
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
async def list_(runtime: RuntimeDep, _: Admin) -> list[TokenOut]:
    return [
        TokenOut.model_validate(r, from_attributes=True) for r in await auth.list_tokens(runtime.db)
    ]


@router.delete("/{token_id}", response_model=TokenOut)
async def revoke(token_id: str, runtime: RuntimeDep, who: Admin) -> TokenOut:
    row = await auth.revoke_token(runtime.db, token_id)
    await runtime.bus.publish("token.revoked", token_id, {"by": who.token_id})
    return TokenOut.model_validate(row, from_attributes=True)
