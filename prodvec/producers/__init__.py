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
}


def producer_class(name: str) -> type[Producer]:
    try:
        target = PRODUCERS[name]
    except KeyError:
        raise KeyError(f"unknown producer {name!r}; registered: {', '.join(PRODUCERS)}") from None
    module, cls = target.split(":")
    return getattr(import_module(module), cls)
