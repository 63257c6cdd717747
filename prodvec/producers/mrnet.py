"""mrnet: MRNet-Product2Vec (Biswas et al. 2017), a multi-task BiLSTM over product text.

A bidirectional LSTM reads the title, then the first `desc_tokens` words of
the description, as word2vec vectors (trained with gensim on the shop's own
titles and descriptions and kept frozen: the shop's text is small, and frozen
vectors keep words seen in few batches where word2vec put them), plus a flag
telling title from description words. Its final forward and backward states,
concatenated and projected to `dim`, are the product embedding z.

Training is discriminative and multi-task with alternating optimisation:
every batch picks one task uniformly at random and updates the shared
network and that task's linear head, on products labelled for it. The tasks
come from the shop (`mrnet_tasks`): a classifier per side-information
column and for the category, regressions of log price and log(1 + views),
and decoding the title's TF-IDF vector.

Product groups (`product_groups=True`, the default): the paper trains one
network per product group and maps the group-specific embeddings into one
space with a sparse autoencoder. Training a network per category is too
slow here, so each category with enough products gets a small adapter
instead, a linear map of the shared z (started at the identity and held
near it) trained with fresh copies of the heads on the tasks that vary
within that category (a neck type exists for tops, not for bags). A sparse
autoencoder (`sparse_autoencoder`, L1 activity penalty, code size `dim`)
then encodes the per-category embeddings into one category-agnostic space;
its code is the output. With `product_groups=False` the output is z itself.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from prodvec import columns as C
from prodvec.producers.base import Embeddings, InsufficientData, Producer, ProducerConfig, TrainContext, seed_torch, torch_device
from prodvec.producers.mrnet_tasks import CLASSIFY, DECODE, REGRESS, Task, build_tasks, tokenise
from prodvec.producers.sparse_autoencoder import SparseAutoencoderConfig, fit_sparse_autoencoder
from prodvec.shop.model import TEXT, Shop


@dataclass(frozen=True)
class MRNetConfig(ProducerConfig):
    # Word vectors (gensim word2vec on titles + descriptions).
    word_dim: int = 48
    w2v_epochs: int = 10
    w2v_window: int = 5
    w2v_min_count: int = 2
    # Description words read after the title; 0 reads titles only.
    desc_tokens: int = 16
    # Words in more than this share of products are not read (stop words).
    max_word_share: float = 0.3
    # Shared BiLSTM (per direction: 2 * hidden = dim needs no projection) and multi-task training.
    hidden: int = 32
    epochs: int = 8
    batch_size: int = 128
    lr: float = 3e-3
    # Tasks: a column labelled for less than this share of products is left out.
    min_labelled: float = 0.25
    min_class_size: int = 5
    tfidf_features: int = 1024
    # Product-group step: per-category adapters, then a sparse autoencoder.
    product_groups: bool = True
    min_group_size: int = 20
    adapter_steps: int = 100
    adapter_lr: float = 1e-2
    # Weight of ||A_g - I||^2: keeps each category's map a small correction.
    adapter_l2: float = 1.0
    sae_epochs: int = 30
    sae_l1: float = 1e-3
    # Weight of the pull towards the previous snapshot's vectors (warm start).
    anchor: float = 1.0


def _stable_hash(text: str) -> int:
    """gensim's seed hash; Python's own hash() differs per process (PYTHONHASHSEED)."""
    return zlib.crc32(text.encode("utf-8"))


def word_vectors(sentences: list[list[str]], cfg: MRNetConfig) -> tuple[dict[str, int], np.ndarray]:
    """Token -> row of the returned matrix; row 0 is an all-zero padding vector."""
    from gensim.models import Word2Vec

    model = Word2Vec(sentences, vector_size=cfg.word_dim, window=cfg.w2v_window, min_count=cfg.w2v_min_count,
                     sg=1, negative=5, epochs=cfg.w2v_epochs, workers=1, seed=cfg.seed, hashfxn=_stable_hash)
    vocab = {token: i + 1 for i, token in enumerate(model.wv.index_to_key)}
    words = model.wv.vectors.astype(np.float64)
    # Word2vec's scale depends on corpus size; standardised inputs keep the
    # LSTM's gates out of the regime where only their biases matter.
    words = (words - words.mean(axis=0)) / np.maximum(words.std(axis=0), 1e-8)
    matrix = np.vstack([np.zeros((1, cfg.word_dim)), words]).astype(np.float32)
    return vocab, matrix


def sequences(titles: list[list[str]], descriptions: list[list[str]], vocab: dict[str, int], desc_tokens: int,
              max_share: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Padded word ids, title flags and lengths of the LSTM's input.

    Words unknown to word2vec and words in more than `max_share` of the
    products ("in", "made", "from") are dropped: they cost LSTM steps and
    tell products apart little. An empty text is one padding step.
    """
    df = pd.Series([w for t, d in zip(titles, descriptions) for w in set(t) | set(d)]).value_counts()
    common = set(df.index[df > max_share * len(titles)])
    keep = {w: i for w, i in vocab.items() if w not in common}
    rows = []
    for title, description in zip(titles, descriptions):
        t = [keep[w] for w in title if w in keep]
        d = [keep[w] for w in description if w in keep][:desc_tokens]
        rows.append((t, d))
    lengths = np.array([max(len(t) + len(d), 1) for t, d in rows], dtype=np.int64)
    ids = np.zeros((len(rows), lengths.max()), dtype=np.int64)
    flags = np.zeros(ids.shape, dtype=np.float32)
    for i, (t, d) in enumerate(rows):
        ids[i, : len(t) + len(d)] = t + d
        flags[i, : max(len(t), 1)] = 1.0
    return ids, flags, lengths


def task_loss(kind: str, pred, target, weight=None):
    """Mean loss over rows, or the `weight`-weighted mean (weight 0 = row not labelled)."""
    import torch.nn.functional as F

    if kind == CLASSIFY:
        per_row = F.cross_entropy(pred, target, reduction="none")
    elif kind == REGRESS:
        per_row = (pred.squeeze(1) - target).pow(2)
    else:  # DECODE: TF-IDF target rows have unit length; cosine ignores the prediction's scale.
        per_row = 1 - F.cosine_similarity(pred, target, dim=1)
    if weight is None:
        return per_row.mean()
    return (per_row * weight).sum() / weight.sum().clamp_min(1.0)


def _target_tensor(task: Task, device):
    import torch

    dtype = torch.long if task.kind == CLASSIFY else torch.float32
    return torch.as_tensor(task.target, dtype=dtype, device=device)


def build_encoder(vectors: np.ndarray, hidden: int, dim: int):
    import torch
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.words = nn.Embedding.from_pretrained(torch.as_tensor(vectors), freeze=True, padding_idx=0)
            self.lstm = nn.LSTM(vectors.shape[1] + 1, hidden, batch_first=True, bidirectional=True)
            self.project = nn.Identity() if 2 * hidden == dim else nn.Linear(2 * hidden, dim)

        def forward(self, ids, flags, lengths):
            x = torch.cat([self.words(ids), flags.unsqueeze(-1)], dim=-1)
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            _, (h, _) = self.lstm(packed)  # h: (2 directions, batch, hidden), the true last states
            return self.project(torch.cat([h[0], h[1]], dim=1))

    return Encoder()


class MRNet(Producer):
    name = "mrnet"
    requires = frozenset({TEXT})
    Config = MRNetConfig
    description = "MRNet-Product2Vec: multi-task BiLSTM over title and description word vectors (Biswas et al. 2017)"
    min_coverage = 0.99

    def train(self, shop: Shop, context: TrainContext) -> Embeddings:
        import torch
        from torch import nn

        cfg = self.config
        rng = seed_torch(cfg.seed)
        device = torch_device(cfg.device)
        products = shop.products.reset_index(drop=True)
        has_title = products[C.TITLE].fillna("").str.strip().str.len().to_numpy() > 0
        products = products[has_title].reset_index(drop=True)
        shop = Shop(root=shop.root, products=products, events=shop.events, orders=shop.orders)
        n = len(products)
        tasks = build_tasks(shop, min_labelled=cfg.min_labelled, min_class_size=cfg.min_class_size,
                            tfidf_features=cfg.tfidf_features)
        if n < 2 or not tasks:
            raise InsufficientData(f"{n} titled products and {len(tasks)} tasks: nothing to learn")
        context.log(f"mrnet tasks: {', '.join(t.name for t in tasks)}")

        titles = tokenise(products[C.TITLE])
        descriptions = tokenise(products[C.DESCRIPTION]) if C.DESCRIPTION in products else [[] for _ in titles]
        vocab, vectors = word_vectors([t + d for t, d in zip(titles, descriptions)], cfg)
        ids_np, flags_np, lengths_np = sequences(titles, descriptions, vocab, cfg.desc_tokens, cfg.max_word_share)
        ids, flags = torch.as_tensor(ids_np, device=device), torch.as_tensor(flags_np, device=device)
        lengths = torch.as_tensor(lengths_np)

        encoder = build_encoder(vectors, cfg.hidden, cfg.dim).to(device)
        heads = nn.ModuleList([nn.Linear(cfg.dim, t.width) for t in tasks]).to(device)
        targets = [_target_tensor(t, device) for t in tasks]
        offset = nn.Parameter(torch.zeros(cfg.dim, device=device))
        optimiser = torch.optim.Adam([*encoder.parameters(), *heads.parameters(), offset], lr=cfg.lr)

        # Anchors: with product groups the output is the autoencoder's code,
        # so the pull acts there; otherwise on z. Up to a learned offset,
        # because snapshots are centred.
        anchors, anchored = None, np.zeros(n, dtype=bool)
        if context.previous is not None and context.previous.dim == cfg.dim and cfg.anchor > 0:
            anchors, anchored = context.previous.lookup(products[C.PRODUCT_ID])
        pull_z = anchors is not None and not cfg.product_groups and anchored.any()
        if pull_z:
            anchor_t, anchored_t = torch.as_tensor(anchors, device=device), torch.as_tensor(anchored, device=device)

        def embed(rows: np.ndarray):
            length = lengths[rows]
            width = int(length.max())
            index = torch.as_tensor(rows, device=device)
            return encoder(ids[index, :width], flags[index, :width], length)

        # One shuffled pass per task, restarted when used up.
        pools = [np.flatnonzero(t.labelled) for t in tasks]
        orders = [rng.permutation(p) for p in pools]
        cursor = [0] * len(tasks)
        steps = max(1, -(-n // cfg.batch_size))
        encoder.train()
        for _ in tqdm(range(cfg.epochs), desc="mrnet", disable=not context.progress, leave=False):
            for _ in range(steps):
                k = int(rng.integers(len(tasks)))
                if cursor[k] >= len(orders[k]):
                    orders[k], cursor[k] = rng.permutation(pools[k]), 0
                rows = np.sort(orders[k][cursor[k] : cursor[k] + cfg.batch_size])
                cursor[k] += cfg.batch_size
                z = embed(rows)
                index = torch.as_tensor(rows, device=device)
                loss = task_loss(tasks[k].kind, heads[k](z), targets[k][index])
                if pull_z:
                    pulled = anchored_t[index]
                    if pulled.any():
                        loss = loss + cfg.anchor * (z[pulled] - offset - anchor_t[index][pulled]).pow(2).mean()
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()

        encoder.eval()
        z_all = np.empty((n, cfg.dim), dtype=np.float32)
        with torch.no_grad():
            for start in range(0, n, 1024):
                rows = np.arange(start, min(start + 1024, n))
                z_all[rows] = embed(rows).cpu().numpy()

        out = z_all
        if cfg.product_groups:
            groups, n_groups = category_groups(products, cfg.min_group_size)
            adapted = fit_group_adapters(z_all, groups, n_groups, tasks, heads, cfg, device)
            sae = SparseAutoencoderConfig(code=cfg.dim, epochs=cfg.sae_epochs, l1=cfg.sae_l1, anchor=cfg.anchor)
            out = fit_sparse_autoencoder(adapted, groups, n_groups, sae, rng, device, anchors=anchors,
                                         anchored=anchored, progress=context.progress)
            self.card_extras_ = {"mrnet": {"tasks": [t.name for t in tasks], "product_groups": n_groups,
                                           "zero_codes": int((np.abs(out).sum(1) == 0).sum())}}
        else:
            self.card_extras_ = {"mrnet": {"tasks": [t.name for t in tasks], "product_groups": 0}}
        # Remove the common offset so cosine neighbourhoods are meaningful.
        out = out - out.mean(axis=0, keepdims=True)
        return Embeddings(products[C.PRODUCT_ID].to_numpy(), out.astype(np.float32))


def category_groups(products: pd.DataFrame, min_size: int) -> tuple[np.ndarray, int]:
    """Group index per product (-1: null or too small a category) and the number of groups."""
    if C.CATEGORY not in products:
        return np.full(len(products), -1), 0
    counts = products[C.CATEGORY].value_counts()
    kept = pd.Index(sorted(counts.index[counts >= min_size]))
    return kept.get_indexer(products[C.CATEGORY].to_numpy()), len(kept)


def fit_group_adapters(z: np.ndarray, groups: np.ndarray, n_groups: int, tasks: list[Task], heads,
                       cfg: MRNetConfig, device) -> np.ndarray:
    """Per-category embeddings: z @ A_g, trained on the tasks that vary within category g.

    All groups train at once as batched matrices (groups padded to the largest);
    each starts at the identity map with copies of the shared heads.
    """
    import torch

    if n_groups == 0:
        return z
    members = [np.flatnonzero(groups == g) for g in range(n_groups)]
    size = max(len(m) for m in members)
    pad = np.full((n_groups, size), -1)
    for g, m in enumerate(members):
        pad[g, : len(m)] = m
    real = pad >= 0
    rows = np.where(real, pad, 0)

    d = z.shape[1]
    z_pad = torch.as_tensor(z[rows], device=device)  # (G, size, d)
    eye = torch.eye(d, device=device)
    maps = torch.nn.Parameter(eye.repeat(n_groups, 1, 1))
    # No shift: the per-group head biases already absorb one, and a free shift
    # would move a whole category away from products without a category.
    params, losses = [maps], []
    for task, head in zip(tasks, heads):
        if task.name == C.CATEGORY:  # constant within a category
            continue
        # A task teaches group g something only if g's products disagree on it.
        labelled = task.labelled[rows] & real  # (G, size)
        useful = labelled.sum(1) >= 10
        if task.kind == CLASSIFY:
            codes = np.where(labelled, task.target[rows], -1)
            useful &= np.array([len(np.unique(c[c >= 0])) >= 2 for c in codes])
        mask = labelled & useful[:, None]
        if not mask.any():
            continue
        weight = torch.nn.Parameter(head.weight.detach().T.repeat(n_groups, 1, 1).clone())  # (G, d, k)
        bias = torch.nn.Parameter(head.bias.detach().repeat(n_groups, 1, 1).clone())
        params += [weight, bias]
        # Padded rows and unlabelled ones weigh 0 (their target is any valid placeholder).
        target = _target_tensor(task, device)[torch.as_tensor(rows.ravel(), device=device)]
        if task.kind == CLASSIFY:
            target = target.clamp_min(0)
        losses.append((task.kind, weight, bias, target, torch.as_tensor(mask.ravel(), dtype=torch.float32, device=device)))
    if not losses:
        return z
    optimiser = torch.optim.Adam(params, lr=cfg.adapter_lr)
    for _ in range(cfg.adapter_steps):
        adapted = torch.bmm(z_pad, maps)
        loss = cfg.adapter_l2 * (maps - eye).pow(2).sum((1, 2)).mean()
        for kind, weight, bias, target, mask in losses:
            pred = (torch.bmm(adapted, weight) + bias).reshape(-1, weight.shape[2])
            loss = loss + task_loss(kind, pred, target, mask) / len(losses)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    out = z.copy()
    with torch.no_grad():
        adapted = torch.bmm(z_pad, maps).cpu().numpy()
    out[pad[real]] = adapted[real]
    return out
