"""Tags on state machines and activities, kept in the engine's store (table `tags`).

    tags = Tags(engine.store)
    tags.tag(arn, {"project": "ddcicd"})
    tags.list(arn)          # {"project": "ddcicd"}
    tags.untag(arn, ["project"])

AWS allows 50 tags per resource; keys are 1-128 characters, values 0-256. Deleting the
resource forgets its tags (`forget`).
"""
from __future__ import annotations

from workflow.engine.errors import EngineError
from workflow.engine.history import HistoryStore

MAX_TAGS = 50
_SCHEMA = """
CREATE TABLE IF NOT EXISTS tags (
    resource_arn TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (resource_arn, key)
);
"""


class TooManyTags(EngineError):
    """More than MAX_TAGS tags on one resource."""


class InvalidTag(EngineError):
    """A key or value outside AWS's length limits."""


class Tags:
    """Key -> value tags per resource ARN."""

    def __init__(self, store: HistoryStore) -> None:
        self.store = store
        store.define(_SCHEMA)

    def list(self, resource_arn: str) -> dict[str, str]:
        rows = self.store.query("SELECT key, value FROM tags WHERE resource_arn = ? ORDER BY key", (resource_arn,))
        return dict(rows)

    def tag(self, resource_arn: str, tags: dict[str, str]) -> None:
        """Adds or overwrites tags; refuses the whole request if the resource would pass MAX_TAGS."""
        for key, value in tags.items():
            if not 1 <= len(key) <= 128 or len(value) > 256:
                raise InvalidTag(f"tag {key!r}={value!r}: keys are 1-128 characters, values at most 256")
        combined = {**self.list(resource_arn), **tags}
        if len(combined) > MAX_TAGS:
            raise TooManyTags(f"{resource_arn} would have {len(combined)} tags; at most {MAX_TAGS} are allowed")
        for key, value in tags.items():
            self.store.write("INSERT OR REPLACE INTO tags VALUES (?, ?, ?)", (resource_arn, key, value))

    def untag(self, resource_arn: str, keys: list[str]) -> None:
        for key in keys:
            self.store.write("DELETE FROM tags WHERE resource_arn = ? AND key = ?", (resource_arn, key))

    def forget(self, resource_arn: str) -> None:
        self.store.write("DELETE FROM tags WHERE resource_arn = ?", (resource_arn,))
