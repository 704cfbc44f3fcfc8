"""SQL storage: SQLAlchemy Core over async drivers, schema under Alembic migrations."""

from .engine import create_engine, dispose_engine
from .migrate import current_revision, upgrade
from .schema import metadata

__all__ = ["create_engine", "dispose_engine", "metadata", "upgrade", "current_revision"]
