"""Registered producers: family name -> "module:Class".

Adding a producer means adding its module and one line here; modules are
imported only when used, so `prodvec --help` does not pay for torch or gensim.
"""

from __future__ import annotations

from dataclasses import fields
from importlib import import_module

from prodvec.core.producer import Producer

PRODUCERS: dict[str, str] = {
    "text_dae": "prodvec.producers.text_dae:TextDAE",
    "clicks_bpr": "prodvec.producers.bpr:ClicksBPR",
    "unified": "prodvec.producers.unified:Unified",
    "sasrec": "prodvec.producers.sasrec:SASRec",
    "text_minilm": "prodvec.producers.text_minilm:TextMiniLM",
    "unified_proj": "prodvec.producers.unified_proj:UnifiedProj",
    "unified_concat": "prodvec.producers.unified_concat:UnifiedConcat",
    "unified_blend": "prodvec.producers.unified_blend:UnifiedBlend",
    "image_siamese": "prodvec.producers.image_siamese:ImageSiamese",
    "mrnet": "prodvec.producers.mrnet:MRNet",
    "prod2vec": "prodvec.producers.prod2vec:Prod2Vec",
    "prodsi2vec": "prodvec.producers.prodsi2vec:ProdSi2Vec",
    "deepwalk_prod2vec": "prodvec.producers.deepwalk_prod2vec:DeepWalkProd2Vec",
    "deepwalk_prodsi2vec": "prodvec.producers.deepwalk_prodsi2vec:DeepWalkProdSi2Vec",
}


def producer_class(name: str) -> type[Producer]:
    try:
        target = PRODUCERS[name]
    except KeyError:
        raise KeyError(f"unknown producer {name!r}; registered: {', '.join(PRODUCERS)}") from None
    module, cls = target.split(":")
    return getattr(import_module(module), cls)


def is_fusion(family: str) -> bool:
    """Whether `family` fuses other snapshots (False for a family no longer registered)."""
    return family in PRODUCERS and producer_class(family).is_fusion


def all_families() -> tuple[str, ...]:
    """Every registered producer, fusions last: they read the others' snapshots."""
    return tuple([f for f in PRODUCERS if not is_fusion(f)] + [f for f in PRODUCERS if is_fusion(f)])


def make_producer(family: str, overrides: dict | None = None) -> Producer:
    """A producer with its config, parameters given as strings coerced to the field types."""
    cls = producer_class(family)
    overrides = dict(overrides or {})
    known = {f.name: f for f in fields(cls.Config)}
    unknown = set(overrides) - set(known)
    if unknown:
        raise ValueError(f"{family}: unknown parameter(s) {sorted(unknown)}; known: {sorted(known)}")
    typed = {}
    for key, value in overrides.items():
        default = getattr(cls.Config(), key)
        if isinstance(value, str) and isinstance(default, bool):  # bool("false") would be True
            if value.lower() not in ("true", "1", "yes", "false", "0", "no"):
                raise ValueError(f"{family}.{key}: expected true or false, got {value!r}")
            typed[key] = value.lower() in ("true", "1", "yes")
        elif isinstance(value, str) and not isinstance(default, str):
            typed[key] = type(default)(value)
        else:
            typed[key] = value
    return cls(cls.Config(**typed))
