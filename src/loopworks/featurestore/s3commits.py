"""S3 commit safety for Delta tables: the delta-rs options under which no commit is lost.

delta-rs commits ``_delta_log/N.json`` with put-if-absent. On S3 that is a conditional write
(``PUT`` with ``If-None-Match: *``, which AWS S3 has honoured since August 2024, as do MinIO,
Cloudflare R2 and moto 5's server): the service creates the object only if it does not exist
and answers ``412`` otherwise, atomically, so exactly one writer gets each version. loopworks
sets it explicitly (``aws_conditional_put=etag``) and refuses to write when the options or the
environment ask for anything else: ``aws_conditional_put`` other than ``etag``,
``AWS_S3_ALLOW_UNSAFE_RENAME`` (an overwriting rename: two writers can both "win" a version and
one commit is lost), ``AWS_S3_LOCKING_PROVIDER`` (deltalake 1.0 removed its DynamoDB log store,
so writers that coordinate through DynamoDB would not see these commits) or deltalake before
1.0. The S3 service must honour ``If-None-Match``; one that ignores it (an old S3 clone) lets a
racing writer overwrite a commit and cannot be detected from here. The endpoint
(``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``), region and, for an ``http://`` endpoint,
``aws_allow_http`` come from the usual AWS environment unless the storage options say
otherwise; credentials are read by delta-rs from the same environment. The tests race two
machines on moto's server (``tests/featurestore/test_offline_s3.py``): the loser's put gets
``412`` and its commit lands as the next version; without ``If-None-Match`` it is lost.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["s3_storage_options"]


def _deltalake_version() -> str:
    try:
        import deltalake
    except ImportError:
        return "0"
    return str(getattr(deltalake, "__version__", "0"))


def s3_storage_options(given: Mapping[str, str] | None,
                       environ: Mapping[str, str] | None = None
                       ) -> tuple[dict[str, str], str | None]:
    """delta-rs options for an ``s3://`` table, and why its commits would not be safe.

    ``given`` wins; the AWS environment fills in the endpoint (``AWS_ENDPOINT_URL_S3``,
    else ``AWS_ENDPOINT_URL``) and region (``AWS_REGION``, else ``AWS_DEFAULT_REGION``), so
    every reader and writer of the table uses the same ones; an ``http://`` endpoint gets
    ``aws_allow_http`` (delta-rs refuses plain HTTP otherwise). Commits are set to S3
    conditional writes (``aws_conditional_put=etag``; see the module docstring).

    Args:
        given: Storage options from the caller (any key spelling delta-rs accepts).
        environ: The environment (default ``os.environ``).

    Returns:
        The options, and ``None`` or the reason writes must be refused (an unsafe commit
        setup was asked for, or deltalake is older than 1.0).
    """
    env = os.environ if environ is None else environ
    options = {k.lower(): str(v) for k, v in (given or {}).items()}

    def pick(keys: tuple[str, ...], env_names: tuple[str, ...]) -> str:
        found = [options.pop(k) for k in keys if k in options]
        return (found[0] if found else "") or next((env[n] for n in env_names if env.get(n)), "")

    endpoint = pick(("aws_endpoint_url_s3", "aws_endpoint_url", "aws_endpoint", "endpoint_url",
                     "endpoint"), ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"))
    if endpoint:  # both keys: AWS_ENDPOINT_URL_S3 in the environment would win over one
        options["aws_endpoint"] = options["aws_endpoint_url_s3"] = endpoint
        if endpoint.startswith("http://") and "allow_http" not in options:
            options.setdefault("aws_allow_http", "true")
    region = pick(("aws_region", "region", "aws_default_region", "default_region"),
                  ("AWS_REGION", "AWS_DEFAULT_REGION"))
    if region:
        options["aws_region"] = region
    conditional = pick(("aws_conditional_put", "conditional_put"), ("AWS_CONDITIONAL_PUT",))
    rename = pick(("aws_s3_allow_unsafe_rename",), ("AWS_S3_ALLOW_UNSAFE_RENAME",))
    locking = pick(("aws_s3_locking_provider",), ("AWS_S3_LOCKING_PROVIDER",))
    version = _deltalake_version()
    problem = None
    if conditional and conditional.strip().lower() != "etag":
        problem = (f"conditional_put is {conditional!r} (AWS_CONDITIONAL_PUT or the storage "
                   "options); use 'etag', or leave it unset, on an S3 service that honours "
                   "If-None-Match")
    elif rename.strip().lower() in ("1", "true", "yes", "on"):
        problem = ("AWS_S3_ALLOW_UNSAFE_RENAME asks for commits by overwriting rename, which "
                   "can lose a commit when two writers race; unset it")
    elif locking:
        problem = (f"AWS_S3_LOCKING_PROVIDER is {locking!r}, but deltalake 1.x has no DynamoDB "
                   "log store, so writers that coordinate through it would not see these "
                   "commits; unset it (all writers then use conditional writes)")
    elif int(version.split(".", 1)[0] or 0) < 1:
        problem = (f"deltalake {version} may commit to S3 without conditional writes; "
                   'upgrade: pip install "deltalake>=1,<2"')
    options["aws_conditional_put"] = "etag"
    # Explicit, so a variable in the environment cannot switch delta-rs to rename commits.
    options["aws_s3_allow_unsafe_rename"] = "false"
    return options, problem
