"""Issue 13: nothing lost, nothing wrongly served. One test (or more) per finding of the issue:

1. rollback / re-validation never serve a snapshot that failed validation;
2. a lock per family: a second writer is told who holds it, a live writer's temporary files are not removed;
3. a snapshot appears only with its verdict; re-runs finish what a killed run left; --force is atomic;
4. image paths stay inside the shop (symlinks too); images are checked by `check` and degrade, never crash;
   far-future timestamps are warned about;
5. a damaged home (card, parquet, registry) and undecodable shop files give one line naming the file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image

from prodvec.cli import main
from prodvec.core import columns as C
from prodvec.core.embeddings import Embeddings
from prodvec.core.home_lock import HomeLocked
from prodvec.core.snapshots import TMP_PREFIX, SnapshotError, SnapshotStore
from tests.shop_factory import make_shop

CUT1 = pd.Timestamp("2025-02-01", tz="UTC")
CUT2 = pd.Timestamp("2025-03-01", tz="UTC")
FAST = {"epochs": 3, "dim": 8, "hidden": 16}


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result) -> str:
    """The CLI failed with a message, not a traceback."""
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), f"traceback: {result.exception!r}\n{result.output}"
    assert "Traceback" not in result.output
    return result.output


def table(n: int, value: float, dim: int = 8) -> Embeddings:
    return Embeddings(np.array([f"P{i:04d}" for i in range(n)]), np.full((n, dim), value, np.float32))


def verdict(store, ref, success=True):
    store.update_card(ref, validation={"success": success, "summary": "PASSED" if success else "FAILED test"})
    return ref


# -- 1. serving invariants -------------------------------------------------------------------------------------
def test_revalidation_failure_takes_a_served_snapshot_out_and_rollback_never_serves_it(served_home, tmp_path):
    """The issue's sequence: an older served snapshot is found bad; a rollback of the newer one must not serve it."""
    home = tmp_path / "home"
    shutil.copytree(served_home.home, home)
    store = SnapshotStore(home)
    promoted = store.promoted("text_dae", 1)
    assert len(promoted) >= 2
    older = store.get(f"text_dae/v1/{promoted[-2]}")
    data = pq.read_table(older.data_file)
    dim = data.schema.field(C.EMBEDDING).type.list_size
    nan = pa.FixedSizeListArray.from_arrays(pa.array(np.full(len(data) * dim, np.nan, np.float32)), dim)
    pq.write_table(data.set_column(1, C.EMBEDDING, nan), older.data_file)

    checked = invoke("validate", older.id, "--shop", served_home.shop_dir, "--home", home)
    assert checked.exit_code == 3, checked.output
    assert "nonfinite_rows" in checked.output and "taken out of service" in checked.output
    assert older.tag not in store.promoted("text_dae", 1)

    rolled = invoke("rollback", "text_dae", "--home", home)
    assert rolled.exit_code == 0, rolled.output
    served = store.promoted("text_dae", 1)
    assert older.tag not in served and f"now serving {served[-1] if served else 'nothing'}" in rolled.output
    from prodvec.core import feast_ops

    fs = feast_ops.open_store(home)
    pid = served_home.shop.products[C.PRODUCT_ID].iloc[0]
    online = fs.get_online_features(features=["product_text_dae_v1:embedding"],
                                    entity_rows=[{"product_id": pid}]).to_dict()["embedding"][0]
    assert online is None or np.isfinite(online).all(), "the online store never returns the failed snapshot's NaNs"


def test_serving_is_rechecked_against_verdicts_by_rollback_and_materialize(tmp_path):
    store = SnapshotStore(tmp_path)
    first = verdict(store, store.write("fam", 1, CUT1, table(4, 1.0), {}))
    second = verdict(store, store.write("fam", 1, CUT2, table(4, 2.0), {}))
    store.promote(first)
    store.promote(second)
    # The first one's verdict changes behind the served list's back (a hand edit, a kill mid re-validation).
    store.update_card(first, validation={"success": False, "summary": "FAILED nonfinite_rows"})
    assert store.rollback("fam", 1) == second.tag
    assert store.promoted("fam", 1) == [] and not store.served_table("fam", 1).exists()
    assert store.withdrawn("fam", 1) == [first.tag, second.tag]

    store.promote(second)
    store.update_card(second, validation={"success": False, "summary": "FAILED"})
    notes = store.reconcile_served()
    assert notes and "no longer served" in notes[0]
    assert store.promoted("fam", 1) == [] and store.online_stale("fam", 1)


# -- 2. locks ------------------------------------------------------------------------------------------------
HOLDER = textwrap.dedent(
    """
    import sys, time
    from prodvec.core.snapshots import SnapshotStore
    with SnapshotStore(sys.argv[1]).lock("fam"):
        print("locked", flush=True)
        time.sleep(60)
    """
)

SLOW_WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np, pandas as pd
    from prodvec.core.embeddings import Embeddings
    from prodvec.core.snapshots import SnapshotStore

    def slow_check(ref):
        print("in temporary", flush=True)
        time.sleep(float(sys.argv[2]))
    emb = Embeddings(np.array(["a", "b"]), np.ones((2, 4), np.float32))
    SnapshotStore(sys.argv[1]).write("fam", 1, pd.Timestamp("2025-03-01", tz="UTC"), emb, {}, check=slow_check)
    print("finished", flush=True)
    """
)


def test_a_second_writer_of_a_family_is_told_who_holds_it_and_a_dead_holder_frees_it(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        store = SnapshotStore(tmp_path)
        with pytest.raises(HomeLocked, match=rf"locked by PID {holder.pid} \(.*\) since \d{{4}}-\d\d-\d\dT"):
            store.write("fam", 1, CUT1, table(4, 1.0), {})
        store.write("other", 1, CUT1, table(4, 1.0), {})  # another family is not blocked
        out = one_line_error(invoke("promote", "fam", "--home", tmp_path)) if store.snapshots("fam") else None
        assert out is None
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    # The holder died without unlocking: its lock is gone with it.
    assert SnapshotStore(tmp_path).write("fam", 1, CUT1, table(4, 1.0), {}).path.exists()


def test_cleaning_leaves_a_live_writers_temporary_directory_alone(tmp_path):
    """Finding 2: a second process's start-up clean-up deleted the first one's in-flight snapshot."""
    writer = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(tmp_path), "3"], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "in temporary"
    (tmp_path / "served").mkdir()
    orphan = tmp_path / "served" / f"{TMP_PREFIX}999999999-x.parquet"  # a dead PID's leftover
    orphan.write_bytes(b"half")
    removed = SnapshotStore(tmp_path).clean_temporary()
    assert removed == [orphan] and not orphan.exists()
    assert writer.stdout.readline().strip() == "finished", "the writer's temporary directory survived"
    assert writer.wait(timeout=30) == 0
    assert [r.tag for r in SnapshotStore(tmp_path).snapshots("fam")] == ["20250301T000000Z"]


# -- 3. crash-safe lifecycle --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_shop(tmp_path_factory):
    from prodvec.core.shop import load_shop

    return load_shop(make_shop(tmp_path_factory.mktemp("reliability"), n_products=40), log=lambda m: None)


def test_a_snapshot_appears_only_with_its_verdict_and_a_rerun_finishes_the_work(small_shop, tmp_path):
    from prodvec.jobs import produce
    from prodvec.validation.verdict import validate_snapshot
    import prodvec.jobs as jobs

    store = SnapshotStore(tmp_path)
    cutoff = [small_shop.end]

    def killed(*args, **kwargs):  # the process dies while the gate runs
        raise KeyboardInterrupt

    original = jobs.validate_snapshot
    jobs.validate_snapshot = killed
    try:
        with pytest.raises(KeyboardInterrupt):
            produce(small_shop, "text_dae", cutoff, store, overrides=FAST, keep_existing=True, progress=False,
                    log=lambda m: None)
    finally:
        jobs.validate_snapshot = original
    assert store.snapshots("text_dae") == [], "no snapshot without a verdict is visible"
    assert not list((tmp_path / "snapshots" / "text_dae" / "v1").glob(f"{TMP_PREFIX}*"))

    lines = []
    runs = produce(small_shop, "text_dae", cutoff, store, overrides=FAST, keep_existing=True, progress=False,
                   log=lines.append)
    assert runs[0].validation is not None and runs[0].ref.card()["validation"] == runs[0].validation
    # A snapshot an older version of the code left without a verdict is validated by the next run, not retrained.
    ref = runs[0].ref
    card = ref.card()
    card.pop("validation")
    ref.card_file.write_text(json.dumps(card))
    lines.clear()
    again = produce(small_shop, "text_dae", cutoff, store, overrides=FAST, keep_existing=True, progress=False,
                    log=lines.append)
    assert again[0].kept and "validated now" in lines[0]
    assert ref.card()["created_at"] == card["created_at"], "not retrained"
    assert ref.card()["validation"]["summary"] == validate_snapshot(store, ref, small_shop)["summary"]


def test_produce_on_an_existing_cutoff_keeps_it_without_training(small_shop, tmp_path):
    store = SnapshotStore(tmp_path)
    args = ("produce", "text_dae", "--shop", small_shop.root, "--home", tmp_path, "--set", "epochs=3",
            "--set", "dim=8", "--set", "hidden=16", "--cutoff", small_shop.end.isoformat())
    first = invoke(*args)
    assert first.exit_code in (0, 3), first.output
    created = store.snapshots("text_dae")[0].card()["created_at"]
    second = invoke(*args)
    assert second.exit_code == first.exit_code, second.output
    assert "exists" in second.output and "rows in" not in second.output
    assert store.snapshots("text_dae")[0].card()["created_at"] == created


def test_force_replacement_is_atomic(tmp_path):
    store = SnapshotStore(tmp_path)
    old = verdict(store, store.write("fam", 1, CUT1, table(4, 1.0), {}))

    def dies(ref):
        assert store.read(ref).vectors[0, 0] == 2.0, "the gate sees the new data in its temporary directory"
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.write("fam", 1, CUT1, table(4, 2.0), {}, replace=True, check=dies)
    assert store.read(old).vectors[0, 0] == 1.0 and old.card()["validation"]["success"], "the old one is intact"
    new = store.write("fam", 1, CUT1, table(4, 3.0), {}, replace=True, check=lambda ref: verdict(store, ref))
    assert store.read(new).vectors[0, 0] == 3.0 and new.card()["validation"]["success"]
    assert [p.name for p in new.path.parent.iterdir()] == [new.tag], "no temporary left"


def test_next_run_cleans_every_orphaned_temporary_file(tmp_path):
    store = SnapshotStore(tmp_path)
    ref = verdict(store, store.write("fam", 1, CUT1, table(4, 1.0), {}))
    store.promote(ref)
    dead = 999_999_999
    orphans = [tmp_path / "served" / f"{TMP_PREFIX}{dead}-abc.parquet",
               tmp_path / "snapshots" / "fam" / f"{TMP_PREFIX}{dead}-versions",
               tmp_path / "snapshots" / "fam" / "v1" / f"{TMP_PREFIX}{dead}-served",
               ref.path / f"{TMP_PREFIX}{dead}-card",
               tmp_path / "served" / f"{TMP_PREFIX}legacy.parquet"]
    for path in orphans:
        path.write_text("{")
    (tmp_path / "snapshots" / "fam" / "v1" / f"{TMP_PREFIX}{dead}-20250301T000000Z-x").mkdir()
    ran = invoke("snapshots", "--home", tmp_path)
    assert ran.exit_code == 0 and "recovered: removed 6 temporary" in ran.output, ran.output
    assert not list(tmp_path.rglob(f"{TMP_PREFIX}*"))


def test_a_kill_between_table_and_served_list_is_repaired(tmp_path):
    store = SnapshotStore(tmp_path)
    first = verdict(store, store.write("fam", 1, CUT1, table(4, 1.0), {}))
    second = verdict(store, store.write("fam", 1, CUT2, table(4, 2.0), {}))
    store.promote(first)
    served_json = (tmp_path / "snapshots" / "fam" / "v1" / "served.json").read_text()
    store.promote(second)
    (tmp_path / "snapshots" / "fam" / "v1" / "served.json").write_text(served_json)  # the list's write never happened
    assert "served table rebuilt" in store.reconcile_served()[0]
    served = pq.read_table(store.served_table("fam", 1)).to_pandas()
    assert set(np.stack(served["embedding"])[:, 0]) == {1.0}


# -- 4. contained inputs ----------------------------------------------------------------------------------------
def test_an_image_path_through_a_symlink_out_of_the_shop_is_rejected(tmp_path):
    from prodvec.core.shop import ContractError, load_shop

    root = make_shop(tmp_path, n_products=8)
    outside = tmp_path / "outside"
    shutil.move(root / C.IMAGES_DIR, outside)
    (root / C.IMAGES_DIR).symlink_to(outside, target_is_directory=True)
    with pytest.raises(ContractError, match="leads outside .* through a symlink") as error:
        load_shop(root, log=lambda m: None)
    assert error.value.column == C.IMAGE_PATH and error.value.row == 0
    out = one_line_error(invoke("check", "--shop", root))
    assert "image_path" in out and "symlink" in out


def test_check_counts_unusable_images_and_training_degrades_instead_of_crashing(tmp_path):
    from prodvec.core.shop import load_shop
    from prodvec.producers.images_io import load_images

    root = make_shop(tmp_path, n_products=12)
    images = root / C.IMAGES_DIR
    names = sorted(p.name for p in images.iterdir())
    data = (images / names[0]).read_bytes()
    (images / names[0]).write_bytes(data[: len(data) // 2])  # truncated PNG
    (images / names[1]).write_bytes(b"GIF89a not an image at all")  # not an image
    Image.new("1", (20000, 20000)).save(images / names[2])  # 400 megapixels: a decompression bomb
    checked = invoke("check", "--shop", root)
    assert checked.exit_code == 0, checked.output
    n = len(names)
    assert f"images {n - 3} of {n} usable" in checked.output and f"3 of {n} image files are unusable" in checked.output
    for name in names[:3]:
        assert name in checked.output
    assert "decompression-bomb" in checked.output

    shop = load_shop(root, log=lambda m: None)
    bank = load_images(shop, side=16, progress=False)
    assert len(bank) == n - 3 and len(bank.failures) == 3
    assert not set(bank.ids) & {n.split(".")[0] for n in names[:3]}


def test_far_future_timestamps_are_warned_about_with_an_example(tmp_path):
    from prodvec.core.shop import load_shop

    def future(tables):
        tables["products"].loc[2, C.CREATED_AT] = pd.Timestamp("2200-01-01", tz="UTC")
        tables["events"].loc[5, C.TS] = pd.Timestamp("2099-06-01", tz="UTC")

    lines = []
    load_shop(make_shop(tmp_path, n_products=8, mutate=future), log=lines.append)
    warned = "\n".join(lines)
    assert "products.parquet, column 'created_at': lies in the future" in warned and "2200-01-01" in warned
    assert "events.parquet, column 'ts': lies in the future" in warned and "2099-06-01" in warned


# -- 5. readable errors -----------------------------------------------------------------------------------------
def test_a_damaged_home_gives_one_line_naming_the_file_and_what_to_do(tmp_path):
    store = SnapshotStore(tmp_path)
    ref = verdict(store, store.write("fam", 1, CUT1, table(4, 1.0), {}))
    other = verdict(store, store.write("fam", 1, CUT2, table(4, 2.0), {}))
    ref.card_file.write_text(ref.card_file.read_text()[:40])  # truncated model_card.json
    listed = invoke("snapshots", "--home", tmp_path)
    out = one_line_error(listed)
    assert other.id in out and "DAMAGED" in out, "the other snapshots are still listed"
    assert str(ref.card_file) in out and "JSONDecodeError" in out and "prodvec produce fam" in out

    data = other.data_file.read_bytes()
    other.data_file.write_bytes(data[: len(data) // 2])  # truncated embeddings.parquet
    out = one_line_error(invoke("promote", other.id, "--home", tmp_path))
    assert str(other.data_file) in out and "cannot be read" in out and f"delete {other.path}" in out
    with pytest.raises(SnapshotError, match="embeddings.parquet"):
        store.read(other)


def test_a_damaged_feast_registry_says_how_to_rebuild_it(tmp_path):
    store = SnapshotStore(tmp_path)
    store.promote(verdict(store, store.write("fam", 1, CUT1, table(4, 1.0), {})))
    (tmp_path / "feast").mkdir()
    (tmp_path / "feast" / "registry.db").write_bytes(b"\x08\x96\x01garbage" * 10)
    out = one_line_error(invoke("apply", "--home", tmp_path))
    assert "registry.db" in out and "delete it and run `prodvec apply`" in out


def test_undecodable_shop_files_name_file_column_and_row(tmp_path):
    root = make_shop(tmp_path, n_products=6)
    products = pq.read_table(root / C.PRODUCTS_FILE)
    titles = products.column(C.TITLE).to_pylist()
    raw = [t.encode() for t in titles]
    raw[3] = b"caf\xe9 latte"  # Latin-1, not UTF-8
    products = products.set_column(products.column_names.index(C.TITLE), C.TITLE,
                                   pa.array(raw, pa.binary()).view(pa.string()))
    pq.write_table(products, root / C.PRODUCTS_FILE)
    out = one_line_error(invoke("check", "--shop", root))
    assert "products.parquet, column 'title': must be valid UTF-8" in out and "row 3" in out

    (root / C.PRODUCTS_FILE).unlink()
    (root / C.PRODUCTS_FILE).mkdir()
    out = one_line_error(invoke("check", "--shop", root))
    assert "products.parquet: is a directory" in out


def test_a_truncated_feast_registry_is_one_line_for_materialize(tmp_path):
    store = SnapshotStore(tmp_path)
    store.promote(verdict(store, store.write("fam", 1, CUT1, table(4, 1.0), {})))
    assert invoke("apply", "--home", tmp_path).exit_code == 0
    registry = tmp_path / "feast" / "registry.db"
    registry.write_bytes(registry.read_bytes()[:50])
    out = one_line_error(invoke("materialize", "--home", tmp_path))
    assert "registry.db" in out and "delete it and run `prodvec apply`" in out
