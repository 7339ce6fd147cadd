"""The PostgreSQL backend: :class:`~cxdb.storage.postgres.backend.PostgresBackend`.

Only this package imports ``asyncpg`` (the ``postgres`` extra: ``pip install 'cxdb[postgres]'``).
"""

from __future__ import annotations

from .backend import PostgresBackend

__all__ = ["PostgresBackend"]
