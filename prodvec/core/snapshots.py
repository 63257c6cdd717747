"""Reading and writing embedding snapshots: the project's one place for snapshot I/O.

Layout under a home directory::

    snapshots/<family>/versions.json              schema of each version number
    snapshots/<family>/v<N>/<cutoff>/embeddings.parquet
    snapshots/<family>/v<N>/<cutoff>/model_card.json
    snapshots/<family>/v<N>/served.json           cutoffs promoted, in order
    served/product_<family>_v<N>.parquet          what Feast reads: promoted rows only

A snapshot directory appears only by an atomic rename of a finished temporary
directory, and the served table is replaced atomically, so a run killed at any
moment leaves either the old state or the new one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from prodvec.core import columns as C
from prodvec.core.embeddings import Embeddings

TMP_PREFIX = ".tmp-"
WRITE_BATCH_ROWS = 50_000


def cutoff_tag(cutoff: pd.Timestamp) -> str:
    return pd.Timestamp(cutoff).tz_convert("UTC").strftime("%Y%m%dT%H%M%SZ")


def parse_tag(tag: str) -> pd.Timestamp:
    return pd.to_datetime(tag, format="%Y%m%dT%H%M%SZ", utc=True)


def view_name(family: str, version: int) -> str:
    return f"product_{family}_v{version}"


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
        return json.loads(self.card_file.read_text())


class SnapshotError(RuntimeError):
    pass


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
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
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
        return {int(k): v for k, v in json.loads(path.read_text()).items()}

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
        versions = self.versions(family)
        number = max(versions, default=0) + 1
        versions[number] = schema
        path = self._versions_file(family)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_json_atomic(path, {str(k): v for k, v in versions.items()})
        return number

    def families(self) -> list[str]:
        if not self.snapshots_dir.exists():
            return []
        return sorted(p.name for p in self.snapshots_dir.iterdir() if p.is_dir())

    # -- snapshots -----------------------------------------------------------
    def write(self, family: str, version: int, cutoff: pd.Timestamp, emb: Embeddings, card: dict,
              *, replace: bool = False, artifacts: dict[str, np.ndarray] | None = None) -> SnapshotRef:
        """Write one snapshot completely or not at all (temp dir + rename).

        `artifacts` are arrays a later run needs (a frozen projection), kept
        beside the data as `artifacts.npz`.
        """
        version_dir = self.snapshots_dir / family / f"v{version}"
        version_dir.mkdir(parents=True, exist_ok=True)
        ref = SnapshotRef(family, version, pd.Timestamp(cutoff).tz_convert("UTC"), version_dir / cutoff_tag(cutoff))
        if ref.path.exists():
            if not replace:
                raise SnapshotError(f"snapshot {ref.id} exists; pass replace=True (--force) to retrain it")
            if ref.tag in self.promoted(family, version):
                raise SnapshotError(f"snapshot {ref.id} is served; roll it back before replacing it")
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{ref.tag}-", dir=version_dir))
        try:
            created = pd.Timestamp.now(tz="UTC")
            self._write_table(tmp / "embeddings.parquet", emb, ref.cutoff, created)
            card = {**card, "family": family, "version": version, "cutoff": ref.cutoff.isoformat(),
                    "rows": len(emb), "dim": emb.dim, "created_at": created.isoformat(),
                    "code_revision": code_revision()}
            if artifacts:
                np.savez(tmp / "artifacts.npz", **artifacts)
            _write_json_atomic(tmp / "model_card.json", card)
            if ref.path.exists():
                shutil.rmtree(ref.path)
            os.rename(tmp, ref.path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return ref

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
        table = pq.read_table(ref.data_file, columns=[C.PRODUCT_ID, C.EMBEDDING])
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
        card = {**ref.card(), **fields}
        _write_json_atomic(ref.card_file, card)
        return card

    def clean_temporary(self) -> list[Path]:
        """Remove leftovers of killed runs (they were never visible as snapshots)."""
        removed = []
        for tmp in self.snapshots_dir.glob(f"*/v*/{TMP_PREFIX}*"):
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
            removed.append(tmp)
        return removed

    # -- serving -------------------------------------------------------------
    def _served_file(self, family: str, version: int) -> Path:
        return self.snapshots_dir / family / f"v{version}" / "served.json"

    def promoted(self, family: str, version: int) -> list[str]:
        path = self._served_file(family, version)
        return json.loads(path.read_text())["promoted"] if path.exists() else []

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
        validation = ref.card().get("validation")
        if not validation:
            raise SnapshotError(f"{ref.id} has not been validated; run `prodvec validate` first")
        if not validation.get("success"):
            raise SnapshotError(f"{ref.id} failed validation and is kept for inspection only: "
                                f"{validation.get('summary', '')}")
        promoted = self.promoted(ref.family, ref.version)
        from prodvec.core.neighbours import ensure_index  # its index exists before it is served (lazy: faiss)
        ensure_index(self, ref)
        if ref.tag not in promoted:
            promoted = sorted(promoted + [ref.tag])
        self._set_served(ref.family, ref.version, promoted)

    def rollback(self, family: str, version: int) -> str:
        """Stop serving the newest promoted snapshot; the one before it is served again."""
        promoted = self.promoted(family, version)
        if len(promoted) < 1:
            raise SnapshotError(f"{view_name(family, version)} serves nothing to roll back")
        if len(promoted) > 1:  # the snapshot served again has its index (homes older than the indexes)
            from prodvec.core.neighbours import ensure_index
            ensure_index(self, self.get(f"{family}/v{version}/{promoted[-2]}"))
        self._set_served(family, version, promoted[:-1])
        return promoted[-1]

    def _set_served(self, family: str, version: int, promoted: list[str]) -> None:
        # Rebuild the served table first, then record the list: if we die in
        # between, the table is the old or new one and the list says the same.
        self.served_dir.mkdir(parents=True, exist_ok=True)
        target = self.served_table(family, version)
        if promoted:
            refs = {r.tag: r for r in self.snapshots(family, version)}
            dim = refs[promoted[-1]].card()["dim"]
            fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".parquet", dir=self.served_dir)
            os.close(fd)
            try:
                with pq.ParquetWriter(tmp, _schema(dim)) as writer:
                    for tag in promoted:
                        source = pq.ParquetFile(refs[tag].data_file)
                        for batch in source.iter_batches(batch_size=WRITE_BATCH_ROWS):
                            writer.write_batch(batch)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        else:
            target.unlink(missing_ok=True)
        _write_json_atomic(self._served_file(family, version), {"promoted": promoted})


def latest_views(store: SnapshotStore) -> dict[str, str]:
    """family -> feature view of its newest served version."""
    return {family: view_name(family, version) for family, version, _ in store.served_versions()}
