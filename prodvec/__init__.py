"""prodvec: product embeddings trained per data source, fused, validated and served through Feast.

`prodvec.core` is what every stage shares; the stages live in the repository's
top-level folders and are installed as `prodvec.producers`, `prodvec.validation`
and `prodvec.consumers`; `prodvec.cli`, `prodvec.pipeline` and `prodvec.report`
sit on top of them.
"""

__version__ = "0.1.0"
