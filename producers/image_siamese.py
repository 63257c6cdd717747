"""image_siamese: a small CNN trained from scratch with a triplet loss on product photos.

Each step takes a batch of anchor products and gives each a positive: the
same product under another augmentation (shift, zoom, flip, brightness and
contrast), or, for a `mate_share` of them, another product with the same
category and visual attributes (the side-information columns named in
`attributes`, e.g. colour and pattern). Half of the anchors also bring a
hard negative: a product of their category with other attributes. The loss
is a batch-all triplet margin loss on cosine distances: each anchor is set
against every image of another label in the batch, so the other anchors
are its random negatives and their hard negatives count too. A negative of
the anchor's own category needs a smaller margin than one of another
category, so the space stays grouped by category, attributes ordering the
products inside it.

Products whose category or attributes are unknown fall back to
augmentation positives; products without a picture get no vector (coverage
< 1 is expected).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.preprocessing import normalize
from tqdm.auto import tqdm

from prodvec.core import columns as C
from prodvec.core.embeddings import Embeddings, InsufficientData
from prodvec.core.producer import Producer, ProducerConfig, TrainContext
from prodvec.producers.torch_utils import seed_torch, torch_device
from prodvec.producers.images_io import ImageBank, load_images
from prodvec.core.shop.model import IMAGES, Shop


@dataclass(frozen=True)
class SiameseConfig(ProducerConfig):
    side: int = 64  # pictures are padded to a square and resized to this
    width: int = 16  # channels of the first block; later blocks widen to 1.5x, 2x, 4x (or 2 dim)
    epochs: int = 4
    # A retrain that starts from the previous snapshot is pulled towards it
    # (a distillation target), so it needs fewer passes.
    warm_epochs: int = 2
    batch_size: int = 96  # anchors per step; each brings a positive, some a hard negative
    lr: float = 3e-3
    margin: float = 0.3  # cosine-distance margin against other categories
    hard_margin: float = 0.1  # ... and against the anchor's own category
    # Share of positives drawn from the attribute group rather than the product
    # itself. Mates differ in details no column records (the generator's
    # sheen band), so more mates trade those details for attribute similarity.
    mate_share: float = 0.25
    hard_share: float = 0.5  # anchors that bring a hard negative from their category
    # Side-information columns that describe what a photo shows (comma-separated);
    # those absent from a shop are ignored.
    attributes: str = "color,colour,baseColour,pattern"
    shift: int = 4  # pixels of random translation
    zoom: float = 0.08
    jitter: float = 0.15  # brightness and contrast; hue is left alone, colour is an attribute
    anchor: float = 3.0  # weight of the pull towards the previous snapshot (warm start)
    min_images: int = 16


def network(cfg: SiameseConfig):
    """Patchify stem and three conv blocks, global average pool, linear to `dim`."""
    from torch import nn

    w = cfg.width
    # The last block is at least twice `dim` wide: with only `dim` channels a
    # few dead ReLUs leave the output rank-deficient (isotropy near 0).
    widths = (w, w * 3 // 2, w * 2, max(w * 4, 2 * cfg.dim))

    def block(c_in: int, c_out: int, pool: bool) -> list:
        layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        return layers + ([nn.MaxPool2d(2)] if pool else [])

    # A 4x4 stride-4 stem costs a fraction of a full-resolution conv on two
    # CPU cores, and a 4x4 filter still sees 1-pixel textures.
    layers = [nn.Conv2d(3, widths[0], 4, stride=4, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)]
    layers += block(widths[0], widths[1], True) + block(widths[1], widths[2], True) + block(widths[2], widths[3], False)
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[3], cfg.dim))


def to_input(pixels, device=None):
    """uint8 N×H×W×3 (numpy or torch) -> float N×3×H×W around zero (BatchNorm takes care of the scale)."""
    import torch

    x = torch.as_tensor(pixels, device=device).permute(0, 3, 1, 2).float().div_(255).sub_(0.5)
    return x.contiguous(memory_format=torch.channels_last)


def augment(pixels, rng: np.random.Generator, cfg: SiameseConfig):
    """Random shift, zoom, horizontal flip, brightness and contrast for a whole uint8 batch at once.

    Geometry is a nearest-pixel gather (no interpolation), so textures stay
    sharp; parameters come from numpy's generator, so a run is the same on
    CPU and GPU.
    """
    import torch

    n, h, w, _ = pixels.shape
    device = pixels.device
    scale = rng.uniform(1 - cfg.zoom, 1 + cfg.zoom, (n, 1))
    flip = np.where(rng.random((n, 1)) < 0.5, -1.0, 1.0)
    shift = rng.integers(-cfg.shift, cfg.shift + 1, (n, 2))

    def source(size: int, sign, offset) -> torch.Tensor:
        centre = (size - 1) / 2
        coords = (np.arange(size) - centre) * sign / scale + centre + offset[:, None]
        return torch.as_tensor(np.clip(np.rint(coords), 0, size - 1).astype(np.int64), device=device)

    rows, cols = source(h, 1.0, shift[:, 0]), source(w, flip, shift[:, 1])
    # One flat gather of whole pixels: far cheaper than indexing with three tensors.
    flat = (torch.arange(n, device=device)[:, None, None] * h + rows[:, :, None]) * w + cols[:, None, :]
    x = to_input(pixels.reshape(n * h * w, -1).index_select(0, flat.reshape(-1)).reshape(n, h, w, -1))
    brightness = rng.uniform(-cfg.jitter, cfg.jitter, (n, 1, 1, 1))
    contrast = rng.uniform(1 - cfg.jitter, 1 + cfg.jitter, (n, 1, 1, 1))
    brightness, contrast = (torch.as_tensor(v, dtype=x.dtype, device=device) for v in (brightness, contrast))
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * contrast + mean + brightness


@dataclass(frozen=True)
class Labels:
    """What the sampler knows about each product row of the image bank."""

    category: np.ndarray  # code, -1 when unknown
    group: np.ndarray  # code of (category, attributes), -1 when any is unknown; codes grow with category
    label: np.ndarray  # group, or a label of its own for products outside any group
    attributes: list[str]


def product_labels(shop: Shop, ids: np.ndarray, cfg: SiameseConfig) -> Labels:
    products = shop.products.set_index(C.PRODUCT_ID).loc[ids].reset_index()
    wanted = [a.strip() for a in cfg.attributes.split(",") if a.strip()]
    attributes = [a for a in wanted if a in shop.side_info_columns]
    if C.CATEGORY in products:
        category = pd.factorize(products[C.CATEGORY], sort=True)[0]
        keys = [C.CATEGORY, *attributes]
        # Sorted groups with the category first: one category's groups are contiguous codes.
        group = products.groupby(keys, sort=True, dropna=True).ngroup()
        group = group.where(products[keys].notna().all(axis=1), -1).fillna(-1).to_numpy(np.int64)
    else:
        category = np.full(len(ids), -1)
        group = np.full(len(ids), -1)
    label = np.where(group >= 0, group, group.max(initial=-1) + 1 + np.arange(len(ids)))
    return Labels(category.astype(np.int64), group, label, attributes)


class TripletSampler:
    """Vectorised draws of positives and negatives for a batch of anchor rows."""

    def __init__(self, labels: Labels, rng: np.random.Generator, cfg: SiameseConfig):
        self.labels, self.rng, self.cfg = labels, rng, cfg
        self.n = len(labels.label)
        # Rows with a known group, sorted by group (hence by category too).
        grouped = np.flatnonzero(labels.group >= 0)
        self.pool = grouped[np.argsort(labels.group[grouped], kind="stable")]
        self.pool_group = labels.group[self.pool]
        self.pool_category = labels.category[self.pool]

    def positives(self, anchors: np.ndarray) -> np.ndarray:
        group = self.labels.group[anchors]
        lo = np.searchsorted(self.pool_group, group, "left")
        hi = np.searchsorted(self.pool_group, group, "right")
        if not len(self.pool):
            return anchors
        # A uniform member of the anchor's group (possibly itself: then only the augmentation differs).
        pick = lo + (self.rng.random(len(anchors)) * (hi - lo)).astype(np.int64)
        mate = self.pool[np.minimum(pick, len(self.pool) - 1)]
        use = (group >= 0) & (self.rng.random(len(anchors)) < self.cfg.mate_share)
        return np.where(use, mate, anchors)

    def hard_negatives(self, anchors: np.ndarray) -> np.ndarray:
        """For a `hard_share` of the anchors, a product of the same category in another group.

        Random negatives need no draw: the other anchors of the batch are those.
        """
        group, category = self.labels.group[anchors], self.labels.category[anchors]
        c_lo = np.searchsorted(self.pool_category, category, "left")
        c_hi = np.searchsorted(self.pool_category, category, "right")
        g_lo = np.searchsorted(self.pool_group, group, "left")
        g_hi = np.searchsorted(self.pool_group, group, "right")
        # Same category minus the anchor's own group: skip over the group's block.
        others = (c_hi - c_lo) - (g_hi - g_lo)
        pick = c_lo + (self.rng.random(len(anchors)) * np.maximum(others, 0)).astype(np.int64)
        pick = np.where(pick >= g_lo, pick + (g_hi - g_lo), pick)
        use = (group >= 0) & (others > 0) & (self.rng.random(len(anchors)) < self.cfg.hard_share)
        return self.pool[pick[use]]


def triplet_loss(z, label, category, n_anchors: int, margin: float, hard_margin: float):
    """Batch-all triplet loss on cosine distance, averaged over the triplets that still violate it.

    Rows are [anchors | positives | hard negatives]; anchor i pairs with
    positive i (and the other way round), and every row of another label is
    a negative.
    """
    import torch

    b = n_anchors
    dist = 1 - z @ z.T
    rows = torch.arange(2 * b, device=z.device)
    partner = (rows + b) % (2 * b)
    d_pos = dist[rows, partner]
    negative = label[rows, None] != label[None, :]
    same_category = (category[rows, None] == category[None, :]) & (category[rows, None] >= 0)
    margins = torch.where(same_category, hard_margin, margin)
    violation = torch.relu(d_pos[:, None] - dist[rows] + margins) * negative
    return violation.sum() / (violation > 0).sum().clamp(min=1)


class ImageSiamese(Producer):
    name = "image_siamese"
    relative_cost = 48
    smoke_settings = {"dim": 16, "side": 32, "width": 16, "epochs": 4, "batch_size": 32}
    requires = frozenset({IMAGES})
    Config = SiameseConfig
    description = "Small CNN trained from scratch with a triplet loss (augmentations, category and attribute mates)"
    # Products without a picture get no vector.
    min_coverage = 0.5

    def train(self, shop: Shop, context: TrainContext) -> Embeddings:
        cfg = self.config
        rng = seed_torch(cfg.seed)
        device = torch_device(cfg.device)
        bank = load_images(shop, cfg.side, progress=context.progress)
        if bank.failures:
            context.log(f"{self.name}: {len(bank.failures)} product image(s) could not be used and are treated as "
                        f"missing, e.g. {bank.failures[0]}")
        try:
            if len(bank) < cfg.min_images:
                raise InsufficientData(f"{len(bank)} products with a picture before the cutoff; need {cfg.min_images}")
            return Embeddings(bank.ids, self._fit(bank, shop, context, rng, device))
        finally:
            bank.close()

    def _fit(self, bank: ImageBank, shop: Shop, context: TrainContext, rng: np.random.Generator, device) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        cfg = self.config
        labels = product_labels(shop, bank.ids, cfg)
        sampler = TripletSampler(labels, rng, cfg)
        label_t = torch.as_tensor(labels.label, device=device)
        category_t = torch.as_tensor(labels.category, device=device)
        # Conv weights are not stored in a snapshot, so a retrain starts from
        # scratch; known products are pulled towards their previous vectors.
        anchored = np.zeros(len(bank), dtype=bool)
        targets = torch.zeros((len(bank), cfg.dim), device=device)
        epochs = cfg.epochs
        warm = context.previous_rows(bank.ids, cfg.dim)
        if warm is not None and cfg.anchor > 0:
            rows, anchored = warm
            targets = F.normalize(torch.as_tensor(rows, device=device), dim=1)
            if anchored.any():
                epochs = cfg.warm_epochs
        self.card_extras_ = {"images": {"products": len(bank), "unusable": len(bank.failures), "attributes": labels.attributes,
                                        "grouped": int((labels.group >= 0).sum()),
                                        "warm_started": int(anchored.sum()), "epochs": epochs}}

        net = network(cfg).to(device).to(memory_format=torch.channels_last)
        optimiser = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
        n, b = len(bank), cfg.batch_size
        steps = epochs * -(-n // b)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=cfg.lr, total_steps=max(steps, 1),
                                                       pct_start=0.2)
        net.train()
        for _ in tqdm(range(epochs), desc="image_siamese", disable=not context.progress, leave=False):
            order = rng.permutation(n)
            for start in range(0, n, b):
                anchors = order[start : start + b]
                rows = np.concatenate([anchors, sampler.positives(anchors), sampler.hard_negatives(anchors)])
                x = augment(torch.as_tensor(bank.batch(rows), device=device), rng, cfg)
                z = F.normalize(net(x), dim=1)
                index = torch.as_tensor(rows, device=device)
                loss = triplet_loss(z, label_t[index], category_t[index], len(anchors), cfg.margin, cfg.hard_margin)
                pulled = anchored[anchors]
                if pulled.any():
                    known = torch.as_tensor(anchors[pulled], device=device)
                    cosine = (z[: len(anchors)][torch.as_tensor(pulled, device=device)] * targets[known]).sum(1)
                    loss = loss + cfg.anchor * (1 - cosine).mean()
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                schedule.step()

        net.eval()
        out = np.empty((n, cfg.dim), dtype=np.float32)
        with torch.no_grad():
            for start in range(0, n, 512):
                rows = np.arange(start, min(start + 512, n))
                out[rows] = F.normalize(net(to_input(bank.batch(rows), device)), dim=1).cpu().numpy()
        # Centred, so an offset shared by all products cannot build up from
        # one warm-started retrain to the next, then back on the unit sphere
        # the warm-start pull compares directions on.
        out -= out.mean(axis=0, keepdims=True)
        return normalize(out)
