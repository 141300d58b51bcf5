"""One place builds loopworks' object graph: :func:`open` returns :class:`Loopworks`.

The CLI, the server (:func:`loopworks.server.create_app`) and SDK users all start here, so
they share one metadata engine, one set of settings and the same wiring between services:
labeling's follow-ups (an answer settles a human loop and starts an automated-labeling
round, :mod:`loopworks.labeling.followups`) are registered once, here, whoever answers.

Example:
    >>> import loopworks
    >>> with loopworks.open(home="~/.loopworks") as lw:          # doctest: +SKIP
    ...     lw.features.feature_group("reviews").get_record("r1")
    ...     task = lw.labeling.next_task("sentiment", lw.workforce.worker("ann"))
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from loopworks.featurestore import FeatureStore
from loopworks.labeling.jobs import LabelingJobs
from loopworks.labeling.rounds import AutoLabelRounds
from loopworks.labeling.workforce import Workforce
from loopworks.metadata import database_url, open_engine
from loopworks.review.flows import HumanReview
from loopworks.settings import Settings, load_settings

if TYPE_CHECKING:
    from loopworks.labeling.accesskeys import AccessKeys
    from loopworks.models.registry import ModelRegistry
    from loopworks.objectstore import ObjectStore
    from loopworks.processing.runner import JobRunner
    from loopworks.processing.scripts import ScriptJobs

__all__ = ["Loopworks", "open"]


@dataclass(eq=False)
class Loopworks:
    """Every service of one loopworks home, wired together.

    Attributes:
        settings: The resolved settings (home, database and store URLs, secrets...).
        engine: The metadata database (jobs, workers, flows, feature groups).
        features: The feature store (offline Delta tables, online store, SQL).
        labeling: Labeling jobs: leases, answers, exports, webhooks.
        workforce: Workers, teams, tokens and sessions (``labeling.workforce``).
        review: Review flows and human loops (A2I's model).
        auto_label: Automated-labeling rounds run off the caller's thread.
    """

    settings: Settings
    engine: sa.Engine
    features: FeatureStore
    labeling: LabelingJobs
    review: HumanReview
    auto_label: AutoLabelRounds
    _models: ModelRegistry | None = field(default=None, repr=False)
    _jobs: JobRunner | None = field(default=None, repr=False)
    _access_keys: AccessKeys | None = field(default=None, repr=False)
    _objects: ObjectStore | None = field(default=None, repr=False)
    _processing_jobs: ScriptJobs | None = field(default=None, repr=False)

    @property
    def home(self) -> Path:
        """The loopworks home folder."""
        return self.settings.home

    @property
    def workforce(self) -> Workforce:
        """Workers, teams, API tokens and sessions."""
        return self.labeling.workforce

    @property
    def access_keys(self) -> AccessKeys:
        """Workers' AWS access keys (boto3's credentials against ``/aws``)."""
        if self._access_keys is None:
            from loopworks.labeling.accesskeys import AccessKeys
            from loopworks.settings import server_secret

            self._access_keys = AccessKeys(self.workforce, server_secret(self.settings))
        return self._access_keys

    @property
    def objects(self) -> ObjectStore:
        """Buckets and objects (what the S3 endpoint serves): staged under ``<home>/s3``,
        bodies where the ``object_store_url`` setting says."""
        if self._objects is None:
            from loopworks.objectstore import ObjectStore
            from loopworks.objectstore.blobs import open_blobs

            blobs = open_blobs(self.home / "s3", self.settings.object_store_url,
                               self.settings.object_store_endpoint)
            self._objects = ObjectStore(self.engine, self.home / "s3", blobs)
        return self._objects

    @property
    def models(self) -> ModelRegistry:
        """Models saved under the home (made on first use)."""
        if self._models is None:
            from loopworks.models.registry import ModelRegistry

            self._models = ModelRegistry(self.home)
        return self._models

    @property
    def processing_jobs(self) -> ScriptJobs:
        """Processing jobs that run a user's own script (SageMaker Processing's model),
        recorded in the metadata database (every process sharing it sees every job); those
        run here keep their folders and logs under ``<home>/processing-jobs`` (made on
        first use)."""
        if self._processing_jobs is None:
            from loopworks.processing.scripts import ScriptJobs

            self._processing_jobs = ScriptJobs(self.engine, self.home / "processing-jobs",
                                               self.objects)
        return self._processing_jobs

    @property
    def jobs(self) -> JobRunner:
        """Processing jobs run in this process's background, one at a time (made on first
        use; the Studio's jobs)."""
        if self._jobs is None:
            from loopworks.processing.runner import JobRunner

            self._jobs = JobRunner(self.settings, at_once=1)
        return self._jobs

    def resume(self) -> None:
        """Finish what a killed process left half done: feature-group writes are rolled
        forward into the online store and pending webhook deliveries sent. A server does
        this before its first request."""
        for spec in self.features.list_feature_groups():
            self.features.feature_group(spec.name)  # opening a group finishes its writes
        self.labeling.webhooks.resume()

    def close(self) -> None:
        """Stop the background work: a running round finishes and writes its labels, queued
        processing jobs are recorded as failed, pending webhook deliveries stay in the
        outbox for next time. The metadata engine stays open for others in the process."""
        self.auto_label.close()
        if self._jobs is not None:
            self._jobs.close()
        self.labeling.webhooks.close()
        self.features.flush_spooled()  # records online whose history append was pending

    def __repr__(self) -> str:
        database = self.engine.url.render_as_string(hide_password=True)
        return f"Loopworks(home={str(self.home)!r}, database={database!r})"

    def __enter__(self) -> Loopworks:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def open(home: str | os.PathLike[str] | None = None, *,  # noqa: A001 - loopworks.open
         store: FeatureStore | None = None, resume: bool = False, run_rounds: bool = True,
         **settings: Any) -> Loopworks:
    """Open a loopworks home: settings, the metadata database (created or upgraded on first
    use), the feature store and the services on it.

    Args:
        home: The home folder (default: the ``home`` setting, ``LOOPWORKS_HOME`` or
            ``~/.loopworks``).
        store: An open feature store to build on (its home and engine are used).
        resume: Also finish what a killed process left half done (:meth:`Loopworks.resume`).
        run_rounds: Start automated-labeling rounds in the background when an answer closes
            one (or a worker finds no task). False for a caller that runs them itself
            (``label simulate``) or a short command that answers nothing.
        **settings: Settings by name (``database_url=...``, ``online_store_url=...``), as on
            the command line; None means "not given".

    Returns:
        The services. Close it (or use ``with``) to stop its background threads.

    Raises:
        ConfigurationError: A setting is invalid.
        SchemaTooNew: A newer loopworks upgraded the metadata database.
    """
    if store is not None:
        resolved = load_settings(home=str(store.home), **settings)
        features = store
    else:
        resolved = load_settings(home=os.fspath(home) if home is not None else None,
                                 **settings)
        # The one place the database is opened (and created or upgraded): the services'
        # constructors below do no I/O and start no thread.
        engine = open_engine(database_url(resolved.home, resolved.database_url))
        features = FeatureStore(settings=resolved, engine=engine)
    engine = features.registry.engine
    labeling = LabelingJobs(engine)
    made: list[Loopworks] = []  # the object store opens on first use, from the services
    review = HumanReview(engine, labeling, home=features.home, features=features,
                         objects=lambda: made[0].objects)
    auto_label = AutoLabelRounds(labeling, home=features.home)
    labeling.follow_ups.after_answer(review.answered)
    if run_rounds:
        labeling.follow_ups.after_answer(auto_label.answered)
        labeling.follow_ups.when_no_task(auto_label.start)
    services = Loopworks(resolved, engine, features, labeling, review, auto_label)
    made.append(services)
    if resume:
        services.resume()
    return services
