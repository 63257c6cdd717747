"""A sparse autoencoder that maps per-group embeddings into one group-agnostic space.

MRNet-Product2Vec learns one embedding space per product group; to compare
products across groups it feeds each product's group embedding into a
sparse autoencoder whose input has one block per group, filled only in the
product's own block, and takes the sparse code as the global embedding. Here
the input also has a shared block, filled for every product: the groups'
spaces start from one shared model, so most of the encoding is common, and a
product without a group (null category) is encoded by the shared block alone.

The code units are tanh, the saturating units of the classic sparse
autoencoder, with an L1 penalty on their activity: ReLU codes under L1 let
whole units die, and a code dimension that is zero for every product makes
the embedding degenerate (isotropy 0, which the validation gate refuses).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from prodvec.producers.torch_utils import with_anchor_pull


@dataclass(frozen=True)
class SparseAutoencoderConfig:
    code: int = 64
    epochs: int = 15
    batch_size: int = 512
    lr: float = 3e-3
    # Weight of the L1 activity penalty on the code (inputs are standardised).
    l1: float = 1e-3
    # Decay of the per-group encoder blocks: a group departs from the shared
    # encoding only where its reconstruction pays for it.
    group_decay: float = 0.1
    anchor: float = 1.0


def block_inputs(z, groups, n_groups: int):
    """[z | z in its group's block, zeros elsewhere]: the (1 + G) * d input of the autoencoder."""
    import torch

    n, d = z.shape
    x = torch.zeros((n, (1 + n_groups) * d), dtype=z.dtype, device=z.device)
    x[:, :d] = z
    rows = torch.nonzero(groups >= 0).squeeze(1)
    if len(rows):
        cols = d * (1 + groups[rows, None]) + torch.arange(d, device=z.device)[None, :]
        x[rows[:, None], cols] = z[rows]
    return x


def fit_sparse_autoencoder(z: np.ndarray, groups: np.ndarray, n_groups: int, cfg: SparseAutoencoderConfig,
                           rng: np.random.Generator, device, anchors: np.ndarray | None = None,
                           anchored: np.ndarray | None = None, progress: bool = False,
                           init: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Codes (n x cfg.code) of `z` (n x d), product i being in group `groups[i]` (-1: none), and the
    trained autoencoder's arrays (encoder_weight, encoder_bias, decoder, decoder_bias).

    With `anchors`, codes of the `anchored` rows are pulled towards them up to
    a learned offset, so that successive retrains stay in one space.
    `init` continues from an earlier autoencoder's arrays (those returned)
    whose groups may differ: `init["groups"][g]` is group g's index in it, -1
    for a group it did not have, which starts as a fresh one does.
    """
    import torch
    from torch import nn

    n, d = z.shape
    # Standardised inputs make the L1 weight mean the same for any encoder scale.
    scaled = (z - z.mean(axis=0)) / max(float(z.std()), 1e-8)
    z_all = torch.as_tensor(scaled, dtype=torch.float32, device=device)
    g_all = torch.as_tensor(groups, dtype=torch.long, device=device)
    width = (1 + n_groups) * d
    encoder = nn.Linear(width, cfg.code).to(device)
    with torch.no_grad():
        encoder.weight[:, d:] = 0  # every group starts at the shared encoding
    decoder = nn.Parameter(torch.randn(width, cfg.code, device=device) / np.sqrt(width))
    decoder_bias = nn.Parameter(torch.zeros(width, device=device))
    if init is not None:
        _load_blocks(init, d, encoder, decoder, decoder_bias)
    offset = nn.Parameter(torch.zeros(cfg.code, device=device))
    optimiser = torch.optim.Adam([*encoder.parameters(), decoder, decoder_bias, offset], lr=cfg.lr)
    use_anchor = anchors is not None and anchored is not None and anchored.any() and cfg.anchor > 0
    if use_anchor:
        anchor_all = torch.as_tensor(anchors, dtype=torch.float32, device=device)
        anchored_all = torch.as_tensor(anchored, device=device)

    def encode(rows):
        return torch.tanh(encoder(block_inputs(z_all[rows], g_all[rows], n_groups)))

    for _ in tqdm(range(cfg.epochs), desc="mrnet sae", disable=not progress, leave=False):
        order = rng.permutation(n)
        for start in range(0, n, cfg.batch_size):
            rows = torch.as_tensor(np.sort(order[start : start + cfg.batch_size]), device=device)
            x = block_inputs(z_all[rows], g_all[rows], n_groups)
            code = torch.tanh(encoder(x))
            # Unit-norm decoder columns: the L1 penalty cannot be dodged by shrinking codes.
            unit = decoder / decoder.norm(dim=0, keepdim=True).clamp_min(1e-8)
            loss = (code @ unit.T + decoder_bias - x).pow(2).sum(1).mean() / d
            loss = loss + cfg.l1 * code.abs().sum(1).mean()
            loss = loss + cfg.group_decay * encoder.weight[:, d:].pow(2).sum() / max(n_groups, 1)
            if use_anchor:
                loss = with_anchor_pull(loss, cfg.anchor, code, anchor_all[rows], anchored_all[rows], offset)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()

    out = np.empty((n, cfg.code), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, n, 4096):
            rows = torch.arange(start, min(start + 4096, n), device=device)
            out[start : start + len(rows)] = encode(rows).cpu().numpy()
    state = {"encoder_weight": encoder.weight, "encoder_bias": encoder.bias, "decoder": decoder,
             "decoder_bias": decoder_bias}
    return out, {k: v.detach().cpu().numpy() for k, v in state.items()}


def _load_blocks(init: dict[str, np.ndarray], d: int, encoder, decoder, decoder_bias) -> None:
    """Copy `init`'s shared block and the blocks of the groups it had into the fresh parameters, in place."""
    import torch

    old = np.asarray(init["groups"])
    if init["encoder_weight"].shape[0] != encoder.weight.shape[0] or init["decoder"].shape[1] != decoder.shape[1]:
        raise ValueError(f"autoencoder init has code size {init['encoder_weight'].shape[0]}, "
                         f"this one {encoder.weight.shape[0]}")
    # Input columns: block 0 is shared, block 1 + g is group g's; map each new column to its old one.
    new_blocks = np.r_[0, 1 + np.flatnonzero(old >= 0)]
    old_blocks = np.r_[0, 1 + old[old >= 0]]
    new_cols = torch.as_tensor((d * new_blocks[:, None] + np.arange(d)).ravel())
    old_cols = (d * old_blocks[:, None] + np.arange(d)).ravel()
    device = encoder.weight.device
    with torch.no_grad():
        encoder.weight[:, new_cols] = torch.as_tensor(init["encoder_weight"][:, old_cols], device=device)
        encoder.bias.copy_(torch.as_tensor(init["encoder_bias"], device=device))
        decoder[new_cols] = torch.as_tensor(init["decoder"][old_cols], device=device)
        decoder_bias[new_cols] = torch.as_tensor(init["decoder_bias"][old_cols], device=device)
