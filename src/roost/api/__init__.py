"""The REST API: a FastAPI app factory, everything under ``/api/v1``."""

from roost.api.app import create_app

__all__ = ["create_app"]
