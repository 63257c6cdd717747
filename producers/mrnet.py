"""mrnet: MRNet-Product2Vec (Biswas et al. 2017), a multi-task BiLSTM over product text.

A bidirectional LSTM reads the title, then the first `desc_tokens` words of
the description (stop words, i.e. words in over half of the products, left
out), as word2vec vectors plus a flag telling title from description words.
The word vectors are trained with gensim on the shop's own titles and
descriptions and then fine-tuned with the network: on a few thousand short
titles word2vec alone places words poorly, and the tasks refine them
(`fine_tune_words=False` keeps them frozen). The LSTM's final
forward and backward states, concatenated (and projected when 2 * hidden
differs from dim), are the shared product embedding z.

Training is discriminative and multi-task with alternating optimisation:
every batch belongs to one task and updates the shared network and that
task's linear head, on products labelled for it; each task makes `epochs`
passes over its labelled products, the tasks' batches interleaved at random. The tasks
come from the shop (`mrnet_tasks`): a classifier per side-information
column and for the category, regressions of log price and log(1 + views),
and decoding the title's TF-IDF vector.

Product groups (`product_groups=True`, the default): the paper trains one
network per product group and maps the group-specific embeddings into one
space with a sparse autoencoder. A network per category is too slow here,
so each category with enough products gets a small adapter instead: a
linear map of the shared z, started at the identity and held near it,
trained with fresh copies of the heads on the tasks that vary within that
category (a neck type exists for tops, not for bags). Products without a
category join the one the category head predicts when it is confident. A
sparse autoencoder (`sparse_autoencoder`, L1 activity penalty, code size
`dim`) then encodes the per-category embeddings into one category-agnostic
space; its code is the output. With `product_groups=False` the output is z.

Warm start: the output of products in the previous snapshot is pulled
towards their previous vectors (up to a learned offset, as snapshots are
centred). The network itself is stored beside each snapshot (its artifacts:
word vectors by word, LSTM, heads by task and unit, autoencoder blocks by
category) and a retrain continues from it, matched by name where the shop
changed, with `warm_epochs` passes per task instead of `epochs` and
`sae_warm_steps` autoencoder steps: on the default shop most of a retrain's
time went into relearning what the previous snapshot's network knew.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from prodvec.core import columns as C
from prodvec.core.embeddings import Embeddings, InsufficientData
from prodvec.core.producer import Producer, ProducerConfig, TrainContext
from prodvec.producers.torch_utils import one_thread, seed_torch, torch_device, with_anchor_pull
from prodvec.producers.mrnet_tasks import CLASSIFY, REGRESS, Task, build_tasks, tokenise
from prodvec.producers.sparse_autoencoder import SparseAutoencoderConfig, fit_sparse_autoencoder
from prodvec.core.shop.model import TEXT, Shop


@dataclass(frozen=True)
class MRNetConfig(ProducerConfig):
    # Word vectors (gensim word2vec on titles + descriptions).
    word_dim: int = 48
    w2v_epochs: int = 5
    w2v_window: int = 5
    w2v_min_count: int = 2
    # Word2vec on a shop's few thousand short titles places rare words
    # poorly; the discriminative tasks refine the vectors it starts from
    # (Myntra 5k, articleType LR on z: frozen 0.76, fine-tuned 0.85, same budget).
    fine_tune_words: bool = True
    # Description words read after the title; 0 reads titles only.
    desc_tokens: int = 6
    # Words in more than this share of products are not read (stop words).
    max_word_share: float = 0.5
    # Shared BiLSTM (per direction: 2 * hidden = dim needs no projection) and multi-task training.
    hidden: int = 32
    # Passes each task makes over its own labelled products (alternating: one task per batch).
    # 12 passes stopped while z was still gaining category information: on the real-report's Myntra
    # split (benchmarks/mrnet_myntra.py) held-out articleType LR on z is 0.886 / 0.869 (seeds 0 / 1)
    # after 12 passes, 0.927 / 0.902 after 24 (a 143-class task whose rarest classes have 5 training
    # products, each seen once per pass). A cold start only: a retrain continues with `warm_epochs`.
    epochs: int = 24
    batch_size: int = 256
    lr: float = 1e-2
    # Tasks: a column labelled for less than this share of products is left out
    # ("mostly null"). Not 0.5: a column only some categories have, like a
    # neck type, is exactly what the per-category adapters learn from.
    min_labelled: float = 0.25
    min_class_size: int = 5
    tfidf_features: int = 1024
    # Product-group step: per-category adapters, then a sparse autoencoder.
    product_groups: bool = True
    min_group_size: int = 20
    adapter_steps: int = 30
    adapter_lr: float = 2e-2
    # Weight of ||A_g - I||^2: keeps each category's map a small correction.
    adapter_l2: float = 1.0
    sae_epochs: int = 12
    # At least this many autoencoder steps however small the shop: 12 epochs of
    # 5,000 products were 120 steps, and the unconverged code lost most of the
    # category information z held (articleType LR 0.76 on z, 0.51 on the code).
    sae_min_steps: int = 1000
    # The code is served only if it keeps at least this share of z's variance
    # (linear read-back R^2); otherwise the shared z is (see linear_r2).
    sae_min_r2: float = 0.95
    sae_l1: float = 1e-3
    sae_group_decay: float = 0.1
    # Weight of the pull towards the previous snapshot's vectors (warm start).
    anchor: float = 1.0
    # Continuing from the previous snapshot's network (its artifacts): passes per task and
    # autoencoder steps then, instead of `epochs` and `sae_min_steps`.
    warm_epochs: int = 4
    sae_warm_steps: int = 300

    def __post_init__(self):
        if self.epochs < 1 or self.warm_epochs < 1:
            raise ValueError(f"mrnet: epochs ({self.epochs}) and warm_epochs ({self.warm_epochs}) must be >= 1")


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


def build_encoder(vectors: np.ndarray, hidden: int, dim: int, freeze: bool = True):
    import torch
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.words = nn.Embedding.from_pretrained(torch.as_tensor(vectors), freeze=freeze, padding_idx=0)
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
    relative_cost = 195
    smoke_settings = {"dim": 16, "epochs": 3, "warm_epochs": 1, "batch_size": 64, "w2v_epochs": 5,
                      "adapter_steps": 20, "sae_epochs": 40, "sae_min_steps": 0, "sae_warm_steps": 0}
    requires = frozenset({TEXT})
    Config = MRNetConfig
    description = "MRNet-Product2Vec: multi-task BiLSTM over title and description word vectors (Biswas et al. 2017)"
    min_coverage = 0.99

    @one_thread()  # steps of a few hundred short titles are too small to split across threads
    def train(self, shop: Shop, context: TrainContext) -> Embeddings:
        import torch
        from torch import nn

        cfg = self.config
        rng = seed_torch(cfg.seed)
        device = torch_device(cfg.device)
        products = shop.products.reset_index(drop=True)
        has_title = products[C.TITLE].fillna("").str.strip().str.len().to_numpy() > 0
        # A product without a title has nothing to read: it is left out.
        products = products[has_title].reset_index(drop=True)
        shop = replace(shop, products=products)
        n = len(products)
        tasks = build_tasks(shop, min_labelled=cfg.min_labelled, min_class_size=cfg.min_class_size,
                            tfidf_features=cfg.tfidf_features)
        if n < 2 or not tasks:
            raise InsufficientData(f"{n} titled products and {len(tasks)} tasks: nothing to learn")

        titles = tokenise(products[C.TITLE])
        descriptions = tokenise(products[C.DESCRIPTION]) if C.DESCRIPTION in products else [[] for _ in titles]
        counts = pd.Series([w for words in titles + descriptions for w in words]).value_counts()
        if not (counts >= cfg.w2v_min_count).any():
            raise InsufficientData(f"no word occurs {cfg.w2v_min_count} times: no word vectors to learn")
        vocab, vectors = word_vectors([t + d for t, d in zip(titles, descriptions)], cfg)
        ids_np, flags_np, lengths_np = sequences(titles, descriptions, vocab, cfg.desc_tokens, cfg.max_word_share)
        ids, flags = torch.as_tensor(ids_np, device=device), torch.as_tensor(flags_np, device=device)
        lengths = torch.as_tensor(lengths_np)

        encoder = build_encoder(vectors, cfg.hidden, cfg.dim, freeze=not cfg.fine_tune_words).to(device)
        heads = nn.ModuleList([nn.Linear(cfg.dim, t.width) for t in tasks]).to(device)
        words = sorted(vocab, key=vocab.get)  # the word matrix's rows 1..
        continued = load_network(context.previous_artifacts, words, vectors, encoder, heads, tasks)
        epochs = cfg.warm_epochs if continued else cfg.epochs
        targets = [_target_tensor(t, device) for t in tasks]
        offset = nn.Parameter(torch.zeros(cfg.dim, device=device))  # used by the anchor only
        optimiser = torch.optim.Adam([*encoder.parameters(), *heads.parameters(), offset], lr=cfg.lr)

        # Anchors: the pull acts on z, which is served when the product-group
        # code is not (see sae_min_r2), and on the autoencoder's code too.
        anchors, anchored = None, np.zeros(n, dtype=bool)
        warm = context.previous_rows(products[C.PRODUCT_ID], cfg.dim)
        if warm is not None and cfg.anchor > 0:
            anchors, anchored = warm
        pull_z = anchors is not None and anchored.any()
        if pull_z:
            anchor_t, anchored_t = torch.as_tensor(anchors, device=device), torch.as_tensor(anchored, device=device)

        def embed(rows: np.ndarray):
            length = lengths[rows]
            width = int(length.max())
            index = torch.as_tensor(rows, device=device)
            return encoder(ids[index, :width], flags[index, :width], length)

        # Alternating optimisation with a budget per task: every task makes
        # `epochs` shuffled passes over its own labelled products, the batches
        # of all tasks in one random interleaving. (A fixed total of batches
        # split among the tasks gave each of Myntra's 8 tasks 2.5 passes, and
        # its 143-class category head was still far from trained.)
        pools = [np.flatnonzero(t.labelled) for t in tasks]
        orders = [rng.permutation(p) for p in pools]
        cursor = [0] * len(tasks)
        schedule = rng.permutation(np.concatenate(
            [np.full(epochs * -(-len(p) // cfg.batch_size), k) for k, p in enumerate(pools)]))
        encoder.train()
        for k in tqdm(schedule, desc="mrnet", disable=not context.progress, leave=False):
            if cursor[k] >= len(orders[k]):
                orders[k], cursor[k] = rng.permutation(pools[k]), 0
            rows = np.sort(orders[k][cursor[k] : cursor[k] + cfg.batch_size])
            cursor[k] += cfg.batch_size
            z = embed(rows)
            index = torch.as_tensor(rows, device=device)
            loss = task_loss(tasks[k].kind, heads[k](z), targets[k][index])
            if pull_z:
                loss = with_anchor_pull(loss, cfg.anchor, z, anchor_t[index], anchored_t[index], offset)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()

        encoder.eval()
        z_all = np.empty((n, cfg.dim), dtype=np.float32)
        with torch.no_grad():
            for start in range(0, n, 1024):
                rows = np.arange(start, min(start + 1024, n))
                z_all[rows] = embed(rows).cpu().numpy()

        self.artifacts_ = network_state(encoder, heads, tasks, words)
        out, n_groups = z_all, 0
        if cfg.product_groups:
            groups, names = category_groups(products, cfg.min_group_size)
            groups = impute_groups(groups, names, products, z_all, tasks, heads, device)
            n_groups = len(names)
            adapted = fit_group_adapters(z_all, groups, n_groups, tasks, heads, cfg, device)
            batches = -(-n // SparseAutoencoderConfig.batch_size)
            group_names = np.array([str(g) for g in names])
            sae_init = autoencoder_init(context.previous_artifacts, group_names) if continued else None
            if sae_init is None:
                sae_epochs = max(cfg.sae_epochs, -(-cfg.sae_min_steps // batches))
            else:
                sae_epochs = max(1, -(-cfg.sae_warm_steps // batches))
            sae = SparseAutoencoderConfig(code=cfg.dim, epochs=sae_epochs, l1=cfg.sae_l1,
                                          group_decay=cfg.sae_group_decay, anchor=cfg.anchor)
            code, sae_state = fit_sparse_autoencoder(adapted, groups, n_groups, sae, rng, device, anchors=anchors,
                                                     anchored=anchored, progress=context.progress, init=sae_init)
            self.artifacts_.update({**{f"sae.{k}": v for k, v in sae_state.items()}, "sae.groups": group_names})
            # The code must keep what the shared model learned: a code from
            # which z cannot be read back linearly has discarded some of it
            # (Myntra 5k: articleType LR 0.93 on z, 0.88 on such a code); then z is served.
            code_r2 = linear_r2(code, z_all)
            if code_r2 >= cfg.sae_min_r2:
                out = code
        # The model card records what the shop let the method learn.
        self.card_extras_ = {"mrnet": {"tasks": [t.name for t in tasks], "words": len(vocab),
                                       "product_groups": n_groups, "continued_previous_network": continued,
                                       "passes_per_task": epochs,
                                       "output": "sparse code" if out is not z_all else "shared z",
                                       **({"code_r2": round(float(code_r2), 4)} if cfg.product_groups else {})}}
        # Remove the common offset so cosine neighbourhoods are meaningful.
        out = out - out.mean(axis=0, keepdims=True)
        return Embeddings(products[C.PRODUCT_ID].to_numpy(), out.astype(np.float32))


def _units(task: Task) -> list[str]:
    """Names of a task head's output units: its classes or TF-IDF terms; a regression has one unit."""
    return [str(c) for c in task.classes] if task.classes else ["value"]


def network_state(encoder, heads, tasks: list[Task], words: list[str]) -> dict[str, np.ndarray]:
    """The network as arrays (a snapshot's artifacts), with the names `load_network` matches by:
    the word of each row of the word matrix, the task and unit of each head row."""
    state = {"vocab": np.array(["", *words])}  # row 0: padding
    state.update({f"encoder.{k}": v.detach().cpu().numpy() for k, v in encoder.state_dict().items()})
    for task, head in zip(tasks, heads):
        state[f"head.{task.name}.weight"] = head.weight.detach().cpu().numpy()
        state[f"head.{task.name}.bias"] = head.bias.detach().cpu().numpy()
        state[f"head.{task.name}.units"] = np.array(_units(task))
    return state


def carry_word_vectors(old_vocab: np.ndarray, old_matrix: np.ndarray, words: list[str],
                       vectors: np.ndarray) -> np.ndarray | None:
    """The word matrix for `words` (rows 1..; row 0 padding) in the previous network's word space.

    A word the previous network read keeps its fine-tuned vector. A new word's
    word2vec vector (`vectors`, this run's) is mapped by the least-squares
    linear map from this run's word2vec vectors to the previous fine-tuned ones
    on the words both know (a translation matrix, Mikolov et al. 2013): two
    word2vec runs differ by roughly a linear map (the minimum-norm one when
    fewer words are shared than it has coefficients). None when no word is
    shared or the word dimension changed.
    """
    rows = pd.Index(old_vocab[1:]).get_indexer(words)  # -1: a new word
    known = rows >= 0
    if old_matrix.shape[1] != vectors.shape[1] or not known.any():
        return None
    out = np.zeros_like(vectors)
    out[1:][known] = old_matrix[1:][rows[known]]
    if not known.all():
        design = np.c_[vectors[1:].astype(np.float64), np.ones(len(words))]
        target = old_matrix[1:][rows[known]].astype(np.float64)
        translation, *_ = np.linalg.lstsq(design[known], target, rcond=None)
        out[1:][~known] = (design[~known] @ translation).astype(vectors.dtype)
    return out


def load_network(state: dict[str, np.ndarray], words: list[str], vectors: np.ndarray, encoder, heads,
                 tasks: list[Task]) -> bool:
    """Continue from the previous snapshot's network (`network_state`): whether it was loaded.

    The LSTM and projection carry over when their shapes match this config;
    the word matrix by word (`carry_word_vectors`); each head's rows by task
    and unit, a class or term new since then keeping its fresh initialisation.
    Nothing is loaded (cold start) without a stored network, or one of other shapes.
    """
    import torch

    if "vocab" not in state:
        return False
    own = encoder.state_dict()
    stored = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    if set(stored) != set(own) or any(stored[k].shape != tuple(own[k].shape) for k in own if k != "words.weight"):
        return False
    matrix = carry_word_vectors(state["vocab"], stored["words.weight"], words, vectors)
    if matrix is None:
        return False
    stored["words.weight"] = matrix
    device = next(encoder.parameters()).device
    encoder.load_state_dict({k: torch.as_tensor(v, device=device) for k, v in stored.items()})
    with torch.no_grad():
        for task, head in zip(tasks, heads):
            key = f"head.{task.name}"
            if f"{key}.units" not in state or state[f"{key}.weight"].shape[1] != head.weight.shape[1]:
                continue
            rows = pd.Index(state[f"{key}.units"]).get_indexer(_units(task))
            hit = torch.as_tensor(np.flatnonzero(rows >= 0), device=device)
            rows = rows[rows >= 0]
            head.weight[hit] = torch.as_tensor(state[f"{key}.weight"][rows], device=device)
            head.bias[hit] = torch.as_tensor(state[f"{key}.bias"][rows], device=device)
    return True


def autoencoder_init(state: dict[str, np.ndarray], group_names: np.ndarray) -> dict[str, np.ndarray] | None:
    """The previous snapshot's autoencoder laid out for this run's groups (`fit_sparse_autoencoder`'s `init`).

    The input has a shared block and one block per group; a group (category)
    the previous autoencoder had keeps its encoder and decoder blocks, a new one
    starts as a cold start does (encoder block zero: the shared encoding).
    None without a stored autoencoder.
    """
    if "sae.groups" not in state:
        return None
    old = pd.Index(state["sae.groups"]).get_indexer(group_names)
    return {"groups": old, **{k: state[f"sae.{k}"] for k in ("encoder_weight", "encoder_bias", "decoder",
                                                                "decoder_bias")}}


def linear_r2(x: np.ndarray, y: np.ndarray) -> float:
    """Share of y's variance a least-squares linear map of x (with intercept) reproduces."""
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import r2_score

    x, y = x.astype(np.float64), y.astype(np.float64)
    return float(r2_score(y, LinearRegression().fit(x, y).predict(x), multioutput="variance_weighted"))


def category_groups(products: pd.DataFrame, min_size: int) -> tuple[np.ndarray, pd.Index]:
    """Group index per product (-1: null or too small a category) and the groups' categories."""
    if C.CATEGORY not in products:
        return np.full(len(products), -1), pd.Index([])
    counts = products[C.CATEGORY].value_counts()
    names = pd.Index(sorted(counts.index[counts >= min_size]))
    return names.get_indexer(products[C.CATEGORY].to_numpy()), names


def impute_groups(groups: np.ndarray, names: pd.Index, products: pd.DataFrame, z: np.ndarray, tasks: list[Task],
                  heads, device) -> np.ndarray:
    """Products without a category join the group the category head predicts, when it is sure (p >= 0.5).

    Otherwise their group-specific input would be empty and they would sit
    apart from the labelled products of their true category.
    """
    import torch

    picked = [(t, h) for t, h in zip(tasks, heads) if t.name == C.CATEGORY]
    missing = np.flatnonzero(products[C.CATEGORY].isna().to_numpy()) if C.CATEGORY in products else []
    if not picked or len(missing) == 0:
        return groups
    task, head = picked[0]
    with torch.no_grad():
        probs = torch.softmax(head(torch.as_tensor(z[missing], device=device)), dim=1).cpu().numpy()
    predicted = names.get_indexer(np.asarray(task.classes, dtype=object)[probs.argmax(1)])
    out = groups.copy()
    out[missing] = np.where(probs.max(1) >= 0.5, predicted, -1)
    return out


def fit_group_adapters(z: np.ndarray, groups: np.ndarray, n_groups: int, tasks: list[Task], heads,
                       cfg: MRNetConfig, device) -> np.ndarray:
    """Per-category embeddings z @ A_g, trained on the tasks that vary within category g.

    Each group starts at the identity map with copies of the shared heads,
    all concatenated into one (d x K) matrix per group; all groups train at
    once, full batch, rows sorted by group so that each group is one slice.
    """
    import torch

    rows = np.flatnonzero(groups >= 0)
    if n_groups == 0 or len(rows) == 0:
        return z
    rows = rows[np.argsort(groups[rows], kind="stable")]
    bounds = np.r_[0, np.cumsum(np.bincount(groups[rows], minlength=n_groups))]
    chosen, masks = [], []
    for task, head in zip(tasks, heads):
        if task.name == C.CATEGORY:  # constant within a category
            continue
        labelled = task.labelled[rows]
        # A task teaches group g something only if g's products disagree on it.
        useful = np.zeros(len(rows), dtype=bool)
        for g in range(n_groups):
            part = slice(bounds[g], bounds[g + 1])
            seen = labelled[part]
            if seen.sum() >= 10 and (task.kind != CLASSIFY or len(np.unique(task.target[rows][part][seen])) >= 2):
                useful[part] = True
        if (labelled & useful).any():
            chosen.append((task, head))
            masks.append(labelled & useful)
    if not chosen:
        return z
    d = z.shape[1]
    weight0 = torch.cat([h.weight.detach().T for _, h in chosen], dim=1)  # (d, K)
    bias0 = torch.cat([h.bias.detach() for _, h in chosen])
    maps = torch.nn.Parameter(torch.eye(d, device=device).repeat(n_groups, 1, 1))
    # No shift: the per-group head biases absorb one, and a free shift would
    # move a whole category away from products without a category.
    weights = torch.nn.Parameter(weight0.repeat(n_groups, 1, 1))
    biases = torch.nn.Parameter(bias0.repeat(n_groups, 1))
    z_rows = torch.as_tensor(z[rows], device=device)
    index = torch.as_tensor(rows, device=device)
    slices, start = [], 0
    for (task, _), mask in zip(chosen, masks):
        target = _target_tensor(task, device)[index]
        if task.kind == CLASSIFY:
            target = target.clamp_min(0)  # unlabelled rows weigh 0; any valid class will do
        slices.append((task.kind, slice(start, start + task.width), target,
                       torch.as_tensor(mask, dtype=torch.float32, device=device)))
        start += task.width
    eye = torch.eye(d, device=device)
    optimiser = torch.optim.Adam([maps, weights, biases], lr=cfg.adapter_lr)
    for _ in range(cfg.adapter_steps):
        composed = torch.bmm(maps, weights)  # (G, d, K): linear map then heads
        pred = torch.cat([z_rows[bounds[g] : bounds[g + 1]] @ composed[g] + biases[g] for g in range(n_groups)])
        loss = cfg.adapter_l2 * (maps - eye).pow(2).sum((1, 2)).mean()
        for kind, cols, target, mask in slices:
            loss = loss + task_loss(kind, pred[:, cols], target, mask) / len(slices)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    out = z.copy()
    with torch.no_grad():
        for g in range(n_groups):
            part = slice(bounds[g], bounds[g + 1])
            out[rows[part]] = (z_rows[part] @ maps[g]).cpu().numpy()
    return out
