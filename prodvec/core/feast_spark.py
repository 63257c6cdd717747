"""The Spark profile: Feast's Spark offline store and Spark materialization over the same served Parquet.

What changes from the default profile is configuration only — the offline
store and the batch engine — so the same snapshots, feature views
(`feast_defs.definitions(spark=True)` declares them as Spark sources) and
consumer code run on a Spark cluster in production (see
`feature_repo/profiles/spark.yaml`). Here Spark runs in local mode.

    fs = open_spark_store(home, master="local[1]")
    feast_ops.apply(fs, home); fs.get_historical_features(...); feast_ops.materialize(fs, home)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from prodvec.core import feast_ops
from prodvec.core.feast_defs import PROJECT


def java_problem() -> str | None:
    """Why a JVM cannot start here (Spark needs one), or None when it can."""
    java = shutil.which("java")
    if java is None:
        return "no `java` on PATH (make system-deps installs openjdk-17-jre-headless)"
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as error:
        return f"`java -version` failed: {error}"
    return None if out.returncode == 0 else f"`java -version` exited {out.returncode}: {out.stderr.strip()[:200]}"


def spark_conf(master: str = "local[1]") -> dict[str, str]:
    """A small local session: one core, no UI, few shuffle partitions, UTC (snapshot cutoffs are UTC)."""
    return {"spark.master": master, "spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "1",
            "spark.sql.session.timeZone": "UTC", "spark.driver.memory": "1g",
            "spark.sql.execution.arrow.pyspark.enabled": "true",
            # Materialization runs Python on the workers: this interpreter, which has Feast.
            "spark.pyspark.python": sys.executable}


def open_spark_store(home: str | Path, online: str = "sqlite", master: str = "local[1]"):
    """`feast_ops.open_store`'s registry and online store, with Spark for offline joins and materialization."""
    from feast import FeatureStore
    from feast.infra.offline_stores.contrib.spark_offline_store.spark import SparkOfflineStoreConfig
    from feast.repo_config import RepoConfig

    # PySpark starts its Python workers from $PYSPARK_PYTHON (default: `python3` on PATH, which lacks Feast).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    base = feast_ops.open_store(home, online).config
    conf = spark_conf(master)
    config = RepoConfig(
        project=PROJECT,
        provider="local",
        registry=base.registry,
        offline_store=SparkOfflineStoreConfig(spark_conf=conf),
        # The provider accepts the engine only as a mapping, as feature_store.yaml spells it.
        batch_engine={"type": "spark.engine", "spark_conf": conf},
        online_store=base.online_store,
        entity_key_serialization_version=3,
        repo_path=base.repo_path,
    )
    return FeatureStore(config=config)
