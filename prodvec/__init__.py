"""prodvec: product embeddings trained per data source, fused, validated and served through Feast."""

__version__ = "0.1.0"
