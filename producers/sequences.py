"""Item sequences out of the clickstream, shared by the sequence-based producers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from prodvec.core import columns as C

# Interactions that say a shopper was interested (impressions say nothing yet).
INTEREST = (C.CLICK, C.ADD_TO_CART, C.PURCHASE)


def session_sequences(events: pd.DataFrame, event_types=INTEREST, min_length: int = 2,
                      by: str = C.SESSION_ID) -> tuple[np.ndarray, np.ndarray]:
    """Product ids of each session (or user, with `by`) in time order, as one flat array.

    Returns (items, offsets): sequence i is items[offsets[i]:offsets[i+1]].
    Repeats of the same product in a row collapse to one (a reload is not a
    new step), and sequences shorter than `min_length` are dropped. Flat arrays
    instead of Python lists keep memory proportional to the events.
    """
    picked = events.loc[events[C.EVENT_TYPE].isin(list(event_types)), [by, C.PRODUCT_ID, C.TS]]
    picked = picked.sort_values([by, C.TS], kind="stable")
    group = picked[by].to_numpy()
    items = picked[C.PRODUCT_ID].to_numpy().astype(str)
    starts = np.r_[True, group[1:] != group[:-1]] if len(group) else np.zeros(0, bool)
    repeat = np.r_[False, (items[1:] == items[:-1]) & ~starts[1:]] if len(items) else np.zeros(0, bool)
    items, starts = items[~repeat], starts[~repeat]
    offsets = np.r_[np.flatnonzero(starts), len(items)]
    lengths = np.diff(offsets)
    keep = lengths >= min_length
    if keep.all():
        return items, offsets
    mask = np.repeat(keep, lengths)
    return items[mask], np.r_[0, np.cumsum(lengths[keep])]


def as_lists(items: np.ndarray, offsets: np.ndarray) -> list[list[str]]:
    """The sequences as Python lists (what gensim's Word2Vec consumes)."""
    return [items[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:])]
