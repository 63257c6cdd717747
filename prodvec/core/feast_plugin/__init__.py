"""prodvec's Feast plugins for embedding views: a batch (compute) engine that streams
materialization into SQLite/Redis in the stores' own row format, and an offline
store whose point-in-time join is one DuckDB ASOF JOIN. Both are selected in
feature_store.yaml (see README, "Feast plugin"); other views go to Feast's own code."""
