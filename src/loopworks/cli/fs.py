"""``loopworks fs``: the feature store on the command line."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from loopworks.cli import handle_errors
from loopworks.cli._common import home_option, plain_console, services
from loopworks.errors import ConfigurationError

if TYPE_CHECKING:
    from loopworks.featurestore import FeatureStore


def _store(home: str | None) -> FeatureStore:
    return services(home).features


def _dump(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))




@click.group()
def fs() -> None:
    """Feature store: feature groups, online records, SQL over the offline history.

    \b
    Example:
      loopworks fs create reviews --from features/train --record-id review_id --event-time date
      loopworks fs ingest reviews features/train
      loopworks fs query "SELECT split_type, count(*) FROM reviews GROUP BY 1"
    """


@fs.command()
@click.argument("name")
@click.option("--from", "source", required=True,
              help="A data file or folder (Parquet, CSV, JSON Lines) to infer definitions from.")
@click.option("--record-id", required=True, help="Feature that identifies a record.")
@click.option("--event-time", required=True, help="Timestamp feature that orders records.")
@click.option("--description", default="", help="What the group holds.")
@click.option("--tag", "tags", multiple=True, help="key=value tag (repeatable).")
@click.option("--ttl", "ttl_seconds", type=float, default=None,
              help="Seconds after which an online record is no longer served.")
@click.option("--ingest/--no-ingest", default=False, help="Also ingest the data it was made from.")
@home_option
@handle_errors
def create(name: str, source: str, record_id: str, event_time: str, description: str,
           tags: tuple[str, ...], ttl_seconds: float | None, ingest: bool,
           home: str | None) -> None:
    """Create feature group NAME with definitions inferred from data."""
    from loopworks.featurestore.group import load_table

    parsed = {}
    for tag in tags:
        key, sep, value = tag.partition("=")
        if not sep:
            raise ConfigurationError(f"--tag {tag!r} must be key=value", setting="tag")
        parsed[key] = value
    table = load_table(source)
    store = _store(home)
    group = store.create_feature_group(name, record_id=record_id, event_time=event_time,
                                       df=table.slice(0, 1000), description=description,
                                       tags=parsed, ttl_seconds=ttl_seconds)
    click.echo(f"created feature group {name!r} with {len(group.spec.definitions)} features")
    if ingest:
        report = group.ingest(table)
        click.echo(f"ingested {report.rows:,} records ({report.rows_per_second:,.0f}/s)")


@fs.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@home_option
@handle_errors
def list_groups(as_json: bool, home: str | None) -> None:
    """List feature groups."""
    specs = _store(home).list_feature_groups()
    if as_json:
        _dump([s.to_dict() for s in specs])
        return
    table = Table()
    for col in ("name", "features", "record id", "event time", "tags", "description"):
        table.add_column(col)
    for s in specs:
        table.add_row(s.name, str(len(s.definitions)), s.record_id, s.event_time,
                      ", ".join(f"{k}={v}" for k, v in s.tags.items()), s.description)
    plain_console().print(table if specs else
                          "no feature groups yet: see `loopworks fs create --help`")


@fs.command()
@click.argument("name")
@home_option
@handle_errors
def describe(name: str, home: str | None) -> None:
    """Definitions, tags, transformation metadata and offline figures of a group (JSON)."""
    _dump(_store(home).feature_group(name).describe())


@fs.command()
@click.argument("text")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@home_option
@handle_errors
def search(text: str, as_json: bool, home: str | None) -> None:
    """Search groups and features by name, description, tag and type."""
    hits = _store(home).search(text)
    if as_json:
        _dump(hits)
        return
    for hit in hits:
        where = hit["feature_group"] + (f":{hit['feature']}" if hit["feature"] else "")
        click.echo(f"{where}  ({', '.join(hit['matched'])})")
    if not hits:
        click.echo("no matches")


@fs.command()
@click.argument("name")
@click.argument("source")
@click.option("--workers", type=int, default=1, show_default=True,
              help="Threads validating batches in parallel.")
@home_option
@handle_errors
def ingest(name: str, source: str, workers: int, home: str | None) -> None:
    """Ingest a file or folder (Parquet, CSV, JSON Lines) into group NAME."""
    report = _store(home).feature_group(name).ingest(source, workers=workers)
    click.echo(f"ingested {report.rows:,} records in {report.batches} batches "
               f"({report.rows_per_second:,.0f}/s); online updated {report.online_written:,}; "
               f"offline version {report.offline_version}")


@fs.command()
@click.argument("name")
@click.argument("record_ids", nargs=-1, required=True)
@click.option("--feature", "features", multiple=True, help="Only these features (repeatable).")
@home_option
@handle_errors
def get(name: str, record_ids: tuple[str, ...], features: tuple[str, ...],
        home: str | None) -> None:
    """Print the latest online record(s) of group NAME as JSON."""
    records = _store(home).feature_group(name).batch_get_record(list(record_ids),
                                                               list(features) or None)
    _dump(records[0] if len(records) == 1 else records)


@fs.command("delete-record")
@click.argument("name")
@click.argument("record_id")
@click.option("--event-time", default=None, help="Time of the delete (default now).")
@click.option("--hard", is_flag=True, help="Remove it online (default: soft, not served).")
@home_option
@handle_errors
def delete_record(name: str, record_id: str, event_time: str | None, hard: bool,
                  home: str | None) -> None:
    """Delete one record (a tombstone is kept in the offline history)."""
    accepted = _store(home).feature_group(name).delete_record(record_id, event_time, hard=hard)
    click.echo("deleted" if accepted else "a newer record is stored: kept offline only")


@fs.command()
@click.argument("sql")
@click.option("--out", default=None, help="Write the result to a .csv or .parquet file.")
@click.option("--as-of", default=None, help="Query the history as it was at this write time.")
@click.option("--limit", type=int, default=50, show_default=True,
              help="Rows to print (the --out file gets all).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON records.")
@home_option
@handle_errors
def query(sql: str, out: str | None, as_of: str | None, limit: int, as_json: bool,
          home: str | None) -> None:
    """Run SQL over every feature group (table NAME: full history; NAME_latest: latest)."""
    frame = _store(home).query(sql, as_of=as_of, out=out)
    if as_json:
        click.echo(frame.head(limit).to_json(orient="records", date_format="iso"))
    else:
        table = Table(show_lines=False)
        for col in frame.columns:
            table.add_column(str(col))
        for row in frame.head(limit).itertuples(index=False):
            table.add_row(*(_short(v) for v in row))
        plain_console().print(table)
        click.echo(f"{len(frame):,} rows" + (f" · written to {out}" if out else ""))


def _short(value: Any) -> str:
    text = str(list(value)) if hasattr(value, "__len__") and not isinstance(value, str) \
        else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


@fs.command()
@click.argument("name")
@home_option
@handle_errors
def optimize(name: str, home: str | None) -> None:
    """Compact the offline Delta table of group NAME."""
    _dump(_store(home).feature_group(name).optimize())


@fs.command()
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@home_option
@handle_errors
def delete(name: str, yes: bool, home: str | None) -> None:
    """Delete feature group NAME with all its data."""
    if not yes:
        click.confirm(f"delete feature group {name!r} and all its data?", abort=True)
    _store(home).delete_feature_group(name)
    click.echo(f"deleted feature group {name!r}")
