"""Sign-in throttling: a limit on failed password sign-ins per name and per address.

Failures are counted in the metadata database (so every server process of a deployment
shares the counts) in fixed windows: after :data:`MAX_PER_NAME` failures for one name, or
:data:`MAX_PER_ADDRESS` from one address, within :data:`WINDOW`, further attempts are
refused with :class:`~loopworks.errors.RateLimited` until the window ends, whatever the
password. Unknown names are counted like known ones, so the limit tells nothing about
which names exist. A successful sign-in clears its name's count (not its address's).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa

from loopworks.errors import RateLimited
from loopworks.labeling.transactions import transaction
from loopworks.metadata.tables import sign_in_failures as failures

__all__ = ["MAX_PER_ADDRESS", "MAX_PER_NAME", "WINDOW", "SignInThrottle", "throttle_keys"]

#: Failed sign-ins allowed per name, and per client address, within :data:`WINDOW`.
MAX_PER_NAME = 5
MAX_PER_ADDRESS = 20
WINDOW = timedelta(minutes=15)


def throttle_keys(name: str, address: str | None) -> list[tuple[str, int]]:
    """The counters a sign-in attempt touches, with their limits."""
    keys = [(f"name:{name.strip().lower()[:120]}", MAX_PER_NAME)]
    if address:
        keys.append((f"addr:{address[:120]}", MAX_PER_ADDRESS))
    return keys


class SignInThrottle:
    """Counts failed sign-ins and refuses attempts past the limits.

    Args:
        engine: The metadata database.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def check(self, keys: Sequence[tuple[str, int]], now: datetime) -> None:
        """Refuse the attempt when any counter is at its limit in the current window.

        Raises:
            RateLimited: With ``retry_after`` in whole seconds.
        """
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(failures).where(
                failures.c.key.in_([k for k, _ in keys]))).all()
        limits = dict(keys)
        wait = 0.0
        for row in rows:
            ends = row.window_start + WINDOW
            if row.failures >= limits[row.key] and now < ends:
                wait = max(wait, (ends - now).total_seconds())
        if wait:
            minutes = max(1, round(wait / 60))
            raise RateLimited(f"too many failed sign-ins; try again in about {minutes} "
                              f"minute{'s' if minutes > 1 else ''}",
                              retry_after=int(wait) + 1)

    def failed(self, keys: Sequence[tuple[str, int]], now: datetime) -> None:
        """Count one failure on each counter (a new window when the old one ended)."""
        with transaction(self.engine) as conn:
            for key, _ in keys:
                row = conn.execute(sa.select(failures).where(failures.c.key == key)).first()
                if row is None:
                    try:
                        with conn.begin_nested():  # another process may insert it first
                            conn.execute(failures.insert().values(key=key, failures=1,
                                                                  window_start=now))
                        continue
                    except sa.exc.IntegrityError:
                        row = conn.execute(sa.select(failures).where(
                            failures.c.key == key)).one()
                if row.window_start + WINDOW <= now:
                    conn.execute(failures.update().where(failures.c.key == key).values(
                        failures=1, window_start=now))
                else:
                    conn.execute(failures.update().where(failures.c.key == key).values(
                        failures=failures.c.failures + 1))

    def succeeded(self, keys: Sequence[tuple[str, int]]) -> None:
        """Clear the name's counter after a successful sign-in."""
        names = [k for k, _ in keys if k.startswith("name:")]
        with transaction(self.engine) as conn:
            conn.execute(failures.delete().where(failures.c.key.in_(names)))
