"""Storage: SQLAlchemy 2 (async) models, engine set-up and Alembic migrations."""

from roost.db.engine import Database
from roost.db.models import Base

__all__ = ["Base", "Database"]
