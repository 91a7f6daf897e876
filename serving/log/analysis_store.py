"""The rollout analysis's running sums in the log store (`analysis_state`), one row per rollout and phase.

The controller writes the sums and the log position they cover in one row, so a crash between two looks
either keeps the previous row (the next look reads the same rows again and adds them once) or the new
one; a restarted controller, on any machine, continues from it. `revision` is a compare-and-set: of two
controllers that looked at once (the rollout lock is best effort), the second write is refused and its
look's sums are not kept, so no row is counted twice.
"""

from __future__ import annotations

import time

import sqlalchemy as sa

from mlgate.serving.log.prediction_log import ANALYSIS_STATE


def ensure_table(engine: sa.Engine) -> None:
    """Create the table when a store lacks it (servers of an older mlgate migrated it)."""
    with engine.begin() as connection:
        ANALYSIS_STATE.create(connection, checkfirst=True)


def load(connection: sa.Connection, rollout_id: str, phase: str) -> tuple[int, str] | None:
    """(revision, body) of the stored sums, or None."""
    c = ANALYSIS_STATE.c
    row = connection.execute(sa.select(c.revision, c.body).where(c.rollout_id == rollout_id, c.phase == phase)).first()
    return None if row is None else (int(row.revision), str(row.body))


def save(engine: sa.Engine, rollout_id: str, phase: str, body: str, revision: int | None) -> bool:
    """Write `body` as the next revision after `revision` (None: the first); False when another writer
    changed the row since it was read."""
    c = ANALYSIS_STATE.c
    with engine.begin() as connection:
        if revision is not None:
            done = connection.execute(ANALYSIS_STATE.update().where(
                c.rollout_id == rollout_id, c.phase == phase, c.revision == revision).values(
                revision=revision + 1, body=body, ts=time.time())).rowcount
            return bool(done)
        try:
            with connection.begin_nested():
                connection.execute(ANALYSIS_STATE.insert().values(rollout_id=rollout_id, phase=phase, revision=1,
                                                                  body=body, ts=time.time()))
        except sa.exc.IntegrityError:
            return False
        return True
