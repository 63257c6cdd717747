"""Feast declarations: the product entity, one feature view per served embedding
version, and the service consumers use. Generated from the snapshots on disk so
that `feast apply` picks up a newly promoted version with no edits here."""

import os

from prodvec.core.feast_defs import definitions
from prodvec.core.snapshots import default_home

# Feast collects module-level objects; the generated ones are put here by name.
# PRODVEC_SPARK=1 (profiles/spark.yaml): the same Parquet declared as Spark sources.
globals().update(definitions(default_home(), spark=os.environ.get("PRODVEC_SPARK") == "1"))
