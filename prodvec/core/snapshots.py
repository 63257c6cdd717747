"""Reading and writing embedding snapshots: the project's one place for snapshot I/O.

Layout under a home directory::

    snapshots/<family>/versions.json              schema of each version number
    snapshots/<family>/v<N>/<cutoff>/embeddings.parquet
    snapshots/<family>/v<N>/<cutoff>/model_card.json
    snapshots/<family>/v<N>/served.json           cutoffs promoted, in order
    served/product_<family>_v<N>.parquet          what Feast reads: promoted rows only

A snapshot directory appears only by an atomic rename of a finished temporary
directory that already carries its validation verdict, and the served table is
replaced atomically, so a run killed at any moment leaves either the old state
or the new one. Temporary names carry their writer's PID (`.tmp-<pid>-...`):
`clean_temporary` removes only those whose writer is gone. Writers of one
family take its lock (`home_lock`); what is served changes only in
`promote`, `rollback` and `withdraw` (all through `_set_served`).
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from prodvec.core import columns as C
from prodvec.core.embeddings import Embeddings
from prodvec.core.home_lock import locked, owner_alive

TMP_PREFIX = ".tmp-"
WRITE_BATCH_ROWS = 50_000
# Parquet key-value metadata of a served table: the tags it was built from, so
# a table and its served.json that disagree (a kill between the two) are found.
SERVED_TAGS_KEY = b"prodvec.served_tags"


def _tmp_prefix(kind: str = "") -> str:
    return f"{TMP_PREFIX}{os.getpid()}-{kind}"


def _tmp_owner(name: str) -> int | None:
    head = name[len(TMP_PREFIX):].split("-", 1)[0]
    return int(head) if head.isdigit() else None


def default_home() -> Path:
    """Where snapshots live: $PRODVEC_HOME, else ./workspace of the checkout.

    Here rather than beside the Feast definitions so that commands that only
    touch snapshots (promote, snapshots, validate) do not import Feast.
    """
    env = os.environ.get("PRODVEC_HOME")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "workspace"


def cutoff_tag(cutoff: pd.Timestamp) -> str:
    return pd.Timestamp(cutoff).tz_convert("UTC").strftime("%Y%m%dT%H%M%SZ")


def parse_tag(tag: str) -> pd.Timestamp:
    return pd.to_datetime(tag, format="%Y%m%dT%H%M%SZ", utc=True)


def view_name(family: str, version: int) -> str:
    return f"product_{family}_v{version}"


# The user-profile tables of the product views (`consumers.user_profiles`), under <home>/USER_DIR.
USER_DIR = "users"


def user_view_name(product_view: str) -> str:
    return "user_" + product_view.removeprefix("product_")


@dataclass(frozen=True)
class SnapshotRef:
    family: str
    version: int
    cutoff: pd.Timestamp
    path: Path

    @property
    def tag(self) -> str:
        return cutoff_tag(self.cutoff)

    @property
    def id(self) -> str:
        return f"{self.family}/v{self.version}/{self.tag}"

    @property
    def view(self) -> str:
        return view_name(self.family, self.version)

    @property
    def data_file(self) -> Path:
        return self.path / "embeddings.parquet"

    @property
    def card_file(self) -> Path:
        return self.path / "model_card.json"

    def card(self) -> dict:
        return _read_json(self.card_file, f"the model card of {self.id}",
                          f"restore it from a backup, or delete {self.path} and run `prodvec produce "
                          f"{self.family} --cutoff {self.cutoff.isoformat()}` to retrain it")


class SnapshotError(RuntimeError):
    pass


def _read_json(path: Path, what: str, remedy: str) -> dict:
    """A JSON file of the home, or a SnapshotError naming the file and what to do."""
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        raise SnapshotError(f"{path}: {what} is damaged ({type(error).__name__}: {error}); {remedy}") from None


def _damaged_parquet(ref: "SnapshotRef", error: Exception) -> SnapshotError:
    return SnapshotError(f"{ref.data_file}: the embeddings of {ref.id} cannot be read ({type(error).__name__}: "
                         f"{error}); delete {ref.path} and run `prodvec produce {ref.family} --cutoff "
                         f"{ref.cutoff.isoformat()}` to retrain it")


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    return False


def _schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            (C.PRODUCT_ID, pa.string()),
            (C.EMBEDDING, pa.list_(pa.float32(), dim)),
            (C.EVENT_TIMESTAMP, pa.timestamp("us", tz="UTC")),
            (C.CREATED_TIMESTAMP, pa.timestamp("us", tz="UTC")),
        ]
    )


def _write_json_atomic(path: Path, payload: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(), dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle, indent=2, default=str)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def code_revision() -> str:
    """The git commit of the code that trained a snapshot, for its model card."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class SnapshotStore:
    def __init__(self, home: str | Path):
        self.home = Path(home)
        self.snapshots_dir = self.home / "snapshots"
        self.served_dir = self.home / "served"

    # -- versions ------------------------------------------------------------
    def _versions_file(self, family: str) -> Path:
        return self.snapshots_dir / family / "versions.json"

    def versions(self, family: str) -> dict[int, dict]:
        path = self._versions_file(family)
        if not path.exists():
            return {}
        known = _read_json(path, f"the version list of {family}",
                           "restore it from a backup (it maps version numbers to schemas)")
        return {int(k): v for k, v in known.items()}

    def version_of(self, family: str, schema: dict) -> int | None:
        """The version number registered for a schema, or None if it was never registered."""
        for number, known in self.versions(family).items():
            if known == schema:
                return number
        return None

    def register_version(self, family: str, schema: dict) -> int:
        """The version number of a schema, registering a new one (versions.json) if it is new."""
        number = self.version_of(family, schema)
        if number is not None:
            return number
        with self.lock(family):
            number = self.version_of(family, schema)
            if number is not None:
                return number
            versions = self.versions(family)
            number = max(versions, default=0) + 1
            versions[number] = schema
            path = self._versions_file(family)
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_json_atomic(path, {str(k): v for k, v in versions.items()})
        return number

    @contextmanager
    def lock(self, family: str):
        """Hold `family`'s writer lock (re-entrant): one writer of a family at a time, across processes."""
        with locked(self.snapshots_dir / family / ".lock", f"{family} under {self.home}"):
            yield

    def families(self) -> list[str]:
        if not self.snapshots_dir.exists():
            return []
        return sorted(p.name for p in self.snapshots_dir.iterdir() if p.is_dir())

    # -- snapshots -----------------------------------------------------------
    def write(self, family: str, version: int, cutoff: pd.Timestamp, emb: Embeddings, card: dict,
              *, replace: bool = False, artifacts: dict[str, np.ndarray] | None = None,
              check: Callable[[SnapshotRef], object] | None = None) -> SnapshotRef:
        """Write one snapshot completely or not at all (temp dir + rename).

        `artifacts` are arrays a later run needs (a frozen projection), kept
        beside the data as `artifacts.npz`. `check` (the validation gate) runs
        on the finished temporary directory before the rename, through a ref
        pointing there, so the snapshot appears with its verdict or not at
        all. `replace` swaps the new directory for the old in one step.
        """
        with self.lock(family):
            return self._write(family, version, cutoff, emb, card, replace, artifacts, check)

    def _write(self, family, version, cutoff, emb, card, replace, artifacts, check) -> SnapshotRef:
        version_dir = self.snapshots_dir / family / f"v{version}"
        version_dir.mkdir(parents=True, exist_ok=True)
        ref = SnapshotRef(family, version, pd.Timestamp(cutoff).tz_convert("UTC"), version_dir / cutoff_tag(cutoff))
        if ref.path.exists():
            if not replace:
                raise SnapshotError(f"snapshot {ref.id} exists; pass replace=True (--force) to retrain it")
            if ref.tag in self.promoted(family, version):
                raise SnapshotError(f"snapshot {ref.id} is served; roll it back before replacing it")
        tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(f"{ref.tag}-"), dir=version_dir))
        try:
            created = pd.Timestamp.now(tz="UTC")
            self._write_table(tmp / "embeddings.parquet", emb, ref.cutoff, created)
            card = {**card, "family": family, "version": version, "cutoff": ref.cutoff.isoformat(),
                    "rows": len(emb), "dim": emb.dim, "created_at": created.isoformat(),
                    "code_revision": code_revision()}
            if artifacts:
                np.savez(tmp / "artifacts.npz", **artifacts)
            _write_json_atomic(tmp / "model_card.json", card)
            if check is not None:
                check(SnapshotRef(family, version, ref.cutoff, tmp))
            if ref.path.exists():
                self._swap_in(tmp, ref.path)
            else:
                os.rename(tmp, ref.path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return ref

    @staticmethod
    def _swap_in(new: Path, target: Path) -> None:
        """Replace directory `target` by `new` atomically; the old one ends up at `new` (then removed)."""
        if not _exchange(new, target):
            # Two renames; a kill in between leaves the old one under a `-old-` name that
            # clean_temporary puts back (the target is then missing, so nothing newer exists).
            old = target.parent / f"{_tmp_prefix('old-')}{target.name}"
            os.rename(target, old)
            os.rename(new, target)
            os.rename(old, new)
        shutil.rmtree(new, ignore_errors=True)

    @staticmethod
    def _write_table(path: Path, emb: Embeddings, cutoff: pd.Timestamp, created: pd.Timestamp) -> None:
        schema = _schema(emb.dim)
        with pq.ParquetWriter(path, schema) as writer:
            for start in range(0, len(emb), WRITE_BATCH_ROWS):
                ids = emb.ids[start : start + WRITE_BATCH_ROWS]
                flat = pa.array(emb.vectors[start : start + WRITE_BATCH_ROWS].ravel(), pa.float32())
                n = len(ids)
                writer.write_batch(
                    pa.record_batch(
                        [
                            pa.array(ids, pa.string()),
                            pa.FixedSizeListArray.from_arrays(flat, emb.dim),
                            pa.array(np.full(n, cutoff.to_datetime64()), pa.timestamp("us", tz="UTC")),
                            pa.array(np.full(n, created.to_datetime64()), pa.timestamp("us", tz="UTC")),
                        ],
                        schema=schema,
                    )
                )
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())

    def _version_numbers(self, family: str) -> list[int]:
        family_dir = self.snapshots_dir / family
        if not family_dir.exists():
            return []
        return sorted(int(p.name[1:]) for p in family_dir.glob("v*") if p.is_dir() and p.name[1:].isdigit())

    def snapshots(self, family: str, version: int | None = None) -> list[SnapshotRef]:
        """Finished snapshots of a family (oldest first); temporary dirs are never listed."""
        out = []
        for number in self._version_numbers(family):
            if version is not None and number != version:
                continue
            for path in sorted((self.snapshots_dir / family / f"v{number}").iterdir()):
                if path.is_dir() and not path.name.startswith(TMP_PREFIX) and (path / "model_card.json").exists():
                    out.append(SnapshotRef(family, number, parse_tag(path.name), path))
        return out

    def get(self, snapshot_id: str) -> SnapshotRef:
        family, version, tag = snapshot_id.split("/")
        for ref in self.snapshots(family, int(version.lstrip("v"))):
            if ref.tag == tag:
                return ref
        raise SnapshotError(f"no snapshot {snapshot_id} under {self.snapshots_dir}")

    def read(self, ref: SnapshotRef) -> Embeddings:
        try:
            table = pq.read_table(ref.data_file, columns=[C.PRODUCT_ID, C.EMBEDDING])
        except (pa.ArrowException, OSError) as error:
            raise _damaged_parquet(ref, error) from None
        emb = table.column(C.EMBEDDING).combine_chunks()
        dim = emb.type.list_size
        vectors = emb.values.to_numpy(zero_copy_only=False).reshape(-1, dim)
        return Embeddings(table.column(C.PRODUCT_ID).to_numpy(zero_copy_only=False), vectors)

    def artifacts(self, ref: SnapshotRef) -> dict[str, np.ndarray]:
        path = ref.path / "artifacts.npz"
        if not path.exists():
            return {}
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}

    def update_card(self, ref: SnapshotRef, **fields) -> dict:
        with self.lock(ref.family):
            card = {**ref.card(), **fields}
            _write_json_atomic(ref.card_file, card)
        return card

    def clean_temporary(self) -> list[Path]:
        """Remove leftovers of killed runs (never visible as snapshots) whose writer is gone.

        A temporary file of a live process (another producer writing now) is
        left alone. The old half of an interrupted non-atomic replacement is
        put back if the new one never arrived.
        """
        removed = []
        patterns = [f"*/{TMP_PREFIX}*", f"*/v*/{TMP_PREFIX}*", f"*/v*/*/{TMP_PREFIX}*"]
        found = [p for pattern in patterns for p in self.snapshots_dir.glob(pattern)]
        found += list(self.served_dir.glob(f"{TMP_PREFIX}*"))
        for tmp in found:
            owner = _tmp_owner(tmp.name)
            if owner is not None and owner_alive(owner):
                continue
            rest = tmp.name[len(TMP_PREFIX):].split("-", 1)[-1]
            if rest.startswith("old-") and not (tmp.parent / rest[4:]).exists():
                os.rename(tmp, tmp.parent / rest[4:])
                continue
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
            removed.append(tmp)
        return removed

    def recover(self) -> list[str]:
        """What every command does first on a home: finish or undo what a killed run left.

        Orphaned temporary files go, and serving is re-checked against the
        verdicts and the served tables (`reconcile_served`); one line per repair.
        """
        removed = self.clean_temporary()
        notes = [f"removed {len(removed)} temporary file(s) left by killed runs"] if removed else []
        return notes + self.reconcile_served()

    # -- serving -------------------------------------------------------------
    def _served_file(self, family: str, version: int) -> Path:
        return self.snapshots_dir / family / f"v{version}" / "served.json"

    def _served_state(self, family: str, version: int) -> dict:
        path = self._served_file(family, version)
        if not path.exists():
            return {"promoted": []}
        return _read_json(path, f"the served list of {view_name(family, version)}",
                          f"restore it, or delete it and promote again with `prodvec promote {family}`")

    def promoted(self, family: str, version: int) -> list[str]:
        return self._served_state(family, version)["promoted"]

    def withdrawn(self, family: str, version: int) -> list[str]:
        """Tags taken out of service (rolled back, or failed a re-validation): not re-promoted by a re-run."""
        return self._served_state(family, version).get("withdrawn", [])

    def online_stale(self, family: str, version: int) -> bool:
        """Whether the online store may still hold rows of a snapshot no longer served (reset it first)."""
        return bool(self._served_state(family, version).get("online_stale", False))

    def mark_online_fresh(self, family: str, version: int) -> None:
        with self.lock(family):
            state = self._served_state(family, version)
            if state.get("online_stale"):
                _write_json_atomic(self._served_file(family, version), {**state, "online_stale": False})

    def served_table(self, family: str, version: int) -> Path:
        return self.served_dir / f"{view_name(family, version)}.parquet"

    def served_versions(self) -> list[tuple[str, int, int]]:
        """(family, version, dim) of every version that has at least one promoted snapshot."""
        out = []
        for family in self.families():
            for number in self._version_numbers(family):
                promoted = self.promoted(family, number)
                if promoted and self.served_table(family, number).exists():
                    out.append((family, number, self.get(f"{family}/v{number}/{promoted[-1]}").card()["dim"]))
        return out

    def served_card(self, family: str) -> dict | None:
        """Model card of the snapshot `family` serves now (newest served version), or None."""
        versions = [number for fam, number, _ in self.served_versions() if fam == family]
        if not versions:
            return None
        return self.get(f"{family}/v{versions[-1]}/{self.promoted(family, versions[-1])[-1]}").card()

    def promote(self, ref: SnapshotRef) -> None:
        """Serve a snapshot: only one that passed validation may be promoted."""
        with self.lock(ref.family):
            validation = ref.card().get("validation")
            if not validation:
                raise SnapshotError(f"{ref.id} has not been validated; run `prodvec validate` first")
            if not validation.get("success"):
                raise SnapshotError(f"{ref.id} failed validation and is kept for inspection only: "
                                    f"{validation.get('summary', '')}")
            promoted = self.promoted(ref.family, ref.version)
            if ref.tag not in promoted:
                promoted = sorted(promoted + [ref.tag])
            withdrawn = [t for t in self.withdrawn(ref.family, ref.version) if t != ref.tag]
            self._set_served(ref.family, ref.version, promoted, withdrawn)

    def rollback(self, family: str, version: int) -> str:
        """Stop serving the newest promoted snapshot; the newest earlier one that passed is served again."""
        with self.lock(family):
            promoted = self.promoted(family, version)
            if len(promoted) < 1:
                raise SnapshotError(f"{view_name(family, version)} serves nothing to roll back")
            self._set_served(family, version, promoted[:-1], self.withdrawn(family, version) + [promoted[-1]])
            return promoted[-1]

    def withdraw(self, ref: SnapshotRef) -> bool:
        """Take a snapshot out of service (it failed a re-validation); False if it was not served."""
        with self.lock(ref.family):
            promoted = self.promoted(ref.family, ref.version)
            if ref.tag not in promoted:
                return False
            self._set_served(ref.family, ref.version, [t for t in promoted if t != ref.tag],
                             self.withdrawn(ref.family, ref.version) + [ref.tag])
            return True

    def _passing(self, refs: dict[str, SnapshotRef], tags: list[str]) -> list[str]:
        """The tags whose snapshot exists and whose recorded verdict is a pass."""
        return [t for t in tags if t in refs and (refs[t].card().get("validation") or {}).get("success")]

    def reconcile_served(self) -> list[str]:
        """Repair serving after a crash or a hand edit; one line per repair.

        Every served list is re-checked against the verdicts (a snapshot whose
        card now says failed, or that is gone, stops being served) and against
        the tags the served table was built from (a kill between rebuilding the
        table and recording the list). A family another process is writing is
        skipped: that process owns its state.
        """
        from prodvec.core.home_lock import HomeLocked

        notes = []
        for family in self.families():
            try:
                with self.lock(family):
                    for number in self._version_numbers(family):
                        notes += self._reconcile(family, number)
            except HomeLocked:
                continue
            except SnapshotError as error:  # a damaged file: said here, and again by whatever reads it
                notes.append(f"{family}: serving not checked: {error}")
        return notes

    def _reconcile(self, family: str, version: int) -> list[str]:
        promoted = self.promoted(family, version)
        refs = {r.tag: r for r in self.snapshots(family, version)}
        passing = self._passing(refs, promoted)
        table = self.served_table(family, version)
        built = None
        if table.exists():
            try:
                meta = pq.read_schema(table).metadata or {}
                built = json.loads(meta.get(SERVED_TAGS_KEY, b"null"))
            except (pa.ArrowException, OSError, ValueError):
                built = None
        if passing == promoted and (built == promoted or (not promoted and not table.exists())):
            return []
        dropped = [t for t in promoted if t not in passing]
        self._set_served(family, version, promoted, self.withdrawn(family, version))
        name = view_name(family, version)
        if dropped:
            return [f"{name}: {', '.join(dropped)} no longer served (failed validation or missing); "
                    f"now serving {passing[-1] if passing else 'nothing'}"]
        return [f"{name}: served table rebuilt to match its served list ({passing[-1] if passing else 'nothing'})"]

    def _set_served(self, family: str, version: int, promoted: list[str], withdrawn: list[str] | None = None) -> None:
        """The one place what is served changes: the served table, then served.json.

        Only snapshots whose card records a passing verdict are served,
        whatever the caller asked: a tag that fails is left out and recorded
        as withdrawn. If we die between the table and the list,
        `reconcile_served` finds them disagreeing and rebuilds.
        """
        previous = self.promoted(family, version)
        refs = {r.tag: r for r in self.snapshots(family, version)}
        passing = self._passing(refs, promoted)
        withdrawn = sorted(set(withdrawn or []) | (set(promoted) - set(passing)))
        if passing:  # the newest served snapshot has its neighbour index before it is served (lazy: faiss)
            from prodvec.core.neighbours import ensure_index

            ensure_index(self, refs[passing[-1]])
        self.served_dir.mkdir(parents=True, exist_ok=True)
        target = self.served_table(family, version)
        if passing:
            dim = refs[passing[-1]].card()["dim"]
            schema = _schema(dim).with_metadata({SERVED_TAGS_KEY: json.dumps(passing).encode()})
            fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(), suffix=".parquet", dir=self.served_dir)
            os.close(fd)
            try:
                with pq.ParquetWriter(tmp, schema) as writer:
                    for tag in passing:
                        try:
                            source = pq.ParquetFile(refs[tag].data_file)
                            for batch in source.iter_batches(batch_size=WRITE_BATCH_ROWS):
                                writer.write_batch(batch.replace_schema_metadata(schema.metadata))
                        except (pa.ArrowException, OSError) as error:
                            raise _damaged_parquet(refs[tag], error) from None
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        else:
            target.unlink(missing_ok=True)
        # Something served before is not any more: the online store may still hold its rows.
        stale = self.online_stale(family, version) or bool(set(previous) - set(passing))
        _write_json_atomic(self._served_file(family, version),
                           {"promoted": passing, "withdrawn": withdrawn, "online_stale": stale})


def latest_views(store: SnapshotStore) -> dict[str, str]:
    """family -> feature view of its newest served version."""
    return {family: view_name(family, version) for family, version, _ in store.served_versions()}
