"""Registered producers: family name -> "module:Class".

Adding a producer means adding its module and one line here; modules are
imported only when used, so `prodvec --help` does not pay for torch or gensim.
"""

from __future__ import annotations

from importlib import import_module

from prodvec.producers.base import Producer

PRODUCERS: dict[str, str] = {
    "text_dae": "prodvec.producers.text_dae:TextDAE",
    "clicks_bpr": "prodvec.producers.bpr:ClicksBPR",
    "unified": "prodvec.producers.unified:Unified",
    "sasrec": "prodvec.producers.sasrec:SASRec",
    "text_minilm": "prodvec.producers.text_minilm:TextMiniLM",
    "unified_proj": "prodvec.producers.unified_proj:UnifiedProj",
    "unified_concat": "prodvec.producers.unified_concat:UnifiedConcat",
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
