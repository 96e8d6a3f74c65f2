"""Local SQLite storage: the public names of the package, so callers need not know its rooms.

schema (tables, migrations), connection (pragmas, corrupt or replaced files), rows (one poll
as SQL rows), writer (queue, batched commits, moving recent rows), prune (retention),
queries (read-only views for the CLI and the web page).
"""

from homepoll.storage.connection import CACHE_KIB
from homepoll.storage.prune import PRUNE_BATCH
from homepoll.storage.queries import (
    database_summary,
    known_sensors,
    latest_readings,
    query_readings,
    read_only,
    recent_polls,
)
from homepoll.storage.rows import PollRecord
from homepoll.storage.schema import MIGRATIONS, PAGE_SIZE, SCHEMA_VERSION, SchemaTooNewError
from homepoll.storage.writer import MERGE_INTERVAL, MERGE_ROWS, Storage, WriteResult

__all__ = [
    "CACHE_KIB",
    "MERGE_INTERVAL",
    "MERGE_ROWS",
    "MIGRATIONS",
    "PAGE_SIZE",
    "PRUNE_BATCH",
    "SCHEMA_VERSION",
    "PollRecord",
    "SchemaTooNewError",
    "Storage",
    "WriteResult",
    "database_summary",
    "known_sensors",
    "latest_readings",
    "query_readings",
    "read_only",
    "recent_polls",
]
