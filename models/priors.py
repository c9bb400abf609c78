"""The two token priors over the tokenizer's (t, h, w) grid.

- `MaskedPrior` (MAGVIT's multi-task masked token modeling, MaskGIT decoding): a bidirectional
  transformer that predicts every masked token at once. One network serves every task.
- `ARPrior` (VideoGPT): a causal transformer over the same tokens in raster order, with an
  explicit KV cache so that the exported ONNX graph decodes incrementally.

How given pixels reach the prior (a COMMIT-like design, documented in MODEL_CARD.md): the
condition video, padded as tasks.md says, is tokenized; each position then gets, besides its
own input token, the condition token at that position (or a null id) and a state saying whether
its footprint is fully, partly or not given. Fully given positions are also kept fixed while
decoding (MaskGIT editing). So frame prediction from one frame still sees that frame, though
no latent frame is fully given.

A factorized vocabulary (`PriorConfig.factors`, e.g. (512, 512) for the 2^18 codes of an LFQ
tokenizer with bit groups (9, 9)): a token id is split into sub-tokens, the digits of the id in
the mixed radix of the factors, low factor first (`sub_k = (id // prod(factors[:k])) %
factors[k]`; for powers of two these are the tokenizer's bit groups). The networks then never
hold a V-way table or softmax:
  - a token's embedding (and a condition token's) is the sum of one embedding per sub-token;
    the ids past the vocabulary ([MASK] / "no condition", the AR prior's class ids V + c) keep
    learned embeddings of their own;
  - the head emits each factor's logits, concatenated: (B, N, sum(factors)) instead of (B, N, V);
  - the loss is the sum of the per-factor cross-entropies, i.e. the sub-tokens are predicted
    independently given the context (the server samples them the same way). Open-MAGVIT2
    predicts them with a small intra-token autoregressive head instead; independent factors are
    the simple first step and keep one network call per decoding step.
Without factors everything is as it always was (same modules, same parameter names).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.layers import TransformerBlock, init_weights
from server.samplers.factored import check_factors

NUM_STATES = 3  # server.tasks.STATE_NONE / PARTIAL / FULL


@dataclass
class PriorConfig:
    vocab_size: int = 1024
    num_classes: int = 10
    grid: tuple[int, int, int] = (4, 8, 8)  # (t, h, w) tokens per window
    dim: int = 256
    layers: int = 6
    heads: int = 8
    dropout: float = 0.0
    # Sub-vocabulary sizes whose product is vocab_size (see the module docstring); () = one vocabulary.
    factors: tuple[int, ...] = ()
    # Masked prior: the class also modulates every block's layer norms (adaptive layer norm, as
    # W.A.L.T / DiT condition on their class), not only through the prepended class token: the
    # shipped prior learned to ignore that one token (models/class_probe.py). Zero-initialised,
    # so a fine-tune from a prior without it starts from the same function.
    class_adaln: bool = False

    def __post_init__(self) -> None:
        self.factors = check_factors(self.factors, self.vocab_size)

    @property
    def head_size(self) -> int:
        """The head's output width: sum(factors) factorized, vocab_size otherwise."""
        return sum(self.factors) if self.factors else self.vocab_size

    @property
    def num_tokens(self) -> int:
        t, h, w = self.grid
        return t * h * w

    @property
    def mask_id(self) -> int:  # also the "no condition token" id
        return self.vocab_size

    @property
    def null_class(self) -> int:
        return self.num_classes


def sub_tokens(ids: torch.Tensor, factors: tuple[int, ...]) -> list[torch.Tensor]:
    """Token ids in [0, prod(factors)) -> one sub-token tensor per factor, low factor first."""
    subs, stride = [], 1
    for f in factors:
        subs.append(torch.div(ids, stride, rounding_mode="floor") % f)
        stride *= f
    return subs


class FactorizedEmbedding(nn.Module):
    """An embedding of ids 0..V-1+extra for a factorized vocabulary: a token id < V is the sum of
    its sub-tokens' embeddings (one table per factor); an id V + j (j < extra: [MASK], "no
    condition", the AR prior's classes) has a learned embedding of its own."""

    def __init__(self, factors: tuple[int, ...], extra: int, dim: int):
        super().__init__()
        self.factors, self.vocab_size = tuple(factors), math.prod(factors)
        self.tables = nn.ModuleList(nn.Embedding(f, dim) for f in factors)
        self.special = nn.Embedding(extra, dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        v = self.vocab_size
        is_special = (ids >= v)[..., None]
        # Both branches are computed for every id (clamped into range): a select exports to ONNX
        # as one Where, with no data-dependent indexing.
        token = sum(table(sub) for table, sub in zip(self.tables, sub_tokens(ids.clamp(max=v - 1), self.factors)))
        special = self.special((ids - v).clamp(min=0))
        return torch.where(is_special, special, token)

    def mean_token(self) -> torch.Tensor:
        """The mean embedding over all V tokens (each sub-token equally often): sum of the tables' means."""
        return sum(table.weight.mean(0) for table in self.tables)


def token_embedding(cfg: PriorConfig, extra: int) -> nn.Module:
    """The embedding of token ids 0..V-1 plus `extra` special ids V.. (one table, or factorized)."""
    if cfg.factors:
        return FactorizedEmbedding(cfg.factors, extra, cfg.dim)
    return nn.Embedding(cfg.vocab_size + extra, cfg.dim)


def factor_log_softmax(cfg: PriorConfig, logits: torch.Tensor) -> torch.Tensor:
    """(..., head_size) logits -> log-probabilities of the same shape: a log-softmax over the
    vocabulary, or over each factor's slice of the head when factorized (independent sub-tokens)."""
    factors = cfg.factors or (cfg.vocab_size,)
    if len(factors) == 1:
        return F.log_softmax(logits, -1)
    return torch.cat([F.log_softmax(part, -1) for part in logits.split(list(factors), -1)], -1)


def token_cross_entropy(cfg: PriorConfig, logits: torch.Tensor, targets: torch.Tensor,
                        log_probs: torch.Tensor | None = None) -> torch.Tensor:
    """Per-position cross-entropy of `targets` (..., ) in [0, V) under `logits` (..., head_size):
    minus the log-probability of each sub-token under its factor's slice of `factor_log_softmax`,
    summed over factors (the log-likelihood of independent sub-tokens; one term unfactorized).
    reduction='none'. `log_probs`: factor_log_softmax(cfg, logits), when the caller has it."""
    log_p = factor_log_softmax(cfg, logits) if log_probs is None else log_probs
    factors = cfg.factors or (cfg.vocab_size,)
    subs = sub_tokens(targets, cfg.factors) if cfg.factors else [targets]
    total, offset = 0.0, 0
    for f, sub in zip(factors, subs):
        total = total - log_p[..., offset:offset + f].gather(-1, sub[..., None])[..., 0]
        offset += f
    return total


class GridEmbedding(nn.Module):
    """Input embedding per grid position: token + condition token + state + spatio-temporal
    position (factorized t, h, w embeddings, summed). `extra`: the input ids past the
    vocabulary (1 for [MASK]; the AR prior's num_classes + 1 class ids)."""

    def __init__(self, cfg: PriorConfig, extra: int):
        super().__init__()
        self.cfg = cfg
        self.token = token_embedding(cfg, extra)
        self.cond = token_embedding(cfg, 1)  # + null
        self.state = nn.Embedding(NUM_STATES, cfg.dim)
        t, h, w = cfg.grid
        self.pos_t, self.pos_h, self.pos_w = nn.Embedding(t, cfg.dim), nn.Embedding(h, cfg.dim), nn.Embedding(w, cfg.dim)
        grid = torch.stack(torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij"), -1)
        self.register_buffer("grid_index", grid.reshape(-1, 3), persistent=False)  # (N, 3)

    def position(self, index: torch.Tensor) -> torch.Tensor:  # index: (n,) raster positions -> (n, D)
        g = self.grid_index[index]
        return self.pos_t(g[:, 0]) + self.pos_h(g[:, 1]) + self.pos_w(g[:, 2])

    def forward(self, ids: torch.Tensor, cond: torch.Tensor, state: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return self.token(ids) + self.cond(cond) + self.state(state) + self.position(index)[None]


def check_inputs(cfg: PriorConfig, tokens: torch.Tensor, cond: torch.Tensor, state: torch.Tensor,
                 class_id: torch.Tensor, max_id: int) -> None:
    if tokens.ndim != 2 or cond.shape != tokens.shape or state.shape != tokens.shape:
        raise ValueError(f"tokens, cond and state must be (B, n) alike; got {tuple(tokens.shape)}, "
                         f"{tuple(cond.shape)}, {tuple(state.shape)}")
    if class_id.shape != tokens.shape[:1]:
        raise ValueError(f"class_id must be (B,); got {tuple(class_id.shape)}")
    if torch.compiler.is_compiling():  # value checks are data-dependent: skipped while exporting
        return
    if tokens.numel() and (tokens.min() < 0 or tokens.max() > max_id):
        raise ValueError(f"token ids must lie in [0, {max_id}]")
    if cond.numel() and (cond.min() < 0 or cond.max() > cfg.vocab_size):
        raise ValueError(f"condition token ids must lie in [0, {cfg.vocab_size}] ({cfg.vocab_size} = none)")
    if state.numel() and (state.min() < 0 or state.max() >= NUM_STATES):
        raise ValueError(f"token states must lie in [0, {NUM_STATES})")
    if class_id.numel() and (class_id.min() < 0 or class_id.max() > cfg.num_classes):
        raise ValueError(f"class ids must lie in [0, {cfg.num_classes}] ({cfg.num_classes} = no class)")


class MaskedPrior(nn.Module):
    """Bidirectional transformer: [class] + N grid positions -> logits over the vocabulary."""

    def __init__(self, cfg: PriorConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = GridEmbedding(cfg, 1)  # + [MASK]
        self.class_embed = nn.Embedding(cfg.num_classes + 1, cfg.dim)  # + null class
        self.blocks = nn.ModuleList(TransformerBlock(cfg.dim, cfg.heads, dropout=cfg.dropout) for _ in range(cfg.layers))
        self.ln = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.head_size)
        init_weights(self)
        if cfg.class_adaln:  # one (scale, shift) pair per layer norm of each block, from the class
            self.class_modulation = nn.ModuleList(nn.Linear(cfg.dim, 4 * cfg.dim) for _ in range(cfg.layers))
            for m in self.class_modulation:
                nn.init.zeros_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, tokens: torch.Tensor, cond: torch.Tensor, state: torch.Tensor, class_id: torch.Tensor) -> torch.Tensor:
        """tokens, cond, state: (B, N) int64; class_id: (B,) -> logits (B, N, V), or
        (B, N, sum(factors)) factorized: each factor's logits, concatenated in factor order."""
        check_inputs(self.cfg, tokens, cond, state, class_id, self.cfg.mask_id)
        n = tokens.shape[1]
        if n != self.cfg.num_tokens:
            raise ValueError(f"the masked prior takes the whole grid of {self.cfg.num_tokens} tokens; got {n}")
        x = self.embed(tokens, cond, state, torch.arange(n, device=tokens.device))  # (B, N, D)
        c = self.class_embed(class_id)  # (B, D)
        x = torch.cat([c[:, None], x], dim=1)  # (B, 1+N, D)
        for i, block in enumerate(self.blocks):
            modulation = self.class_modulation[i](c)[:, None].chunk(4, -1) if self.cfg.class_adaln else None
            x, _ = block(x, modulation=modulation)
        return self.head(self.ln(x[:, 1:]))

    def token_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-position cross-entropy (B, N) of `targets` under this prior's `logits` (factorized
        or not: `token_cross_entropy`). Training weights and averages it over the masked positions."""
        return token_cross_entropy(self.cfg, logits, targets)


class ARPrior(nn.Module):
    """Causal transformer in raster order. Sequence position s predicts token s; its input is
    the class (s = 0) or token s-1, plus the condition token and state *of position s* (known
    before decoding), so given frames steer every prediction. Input ids: tokens are
    0..V-1, class c is V + c (c = num_classes: no class)."""

    def __init__(self, cfg: PriorConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = GridEmbedding(cfg, cfg.num_classes + 1)
        self.blocks = nn.ModuleList(TransformerBlock(cfg.dim, cfg.heads, dropout=cfg.dropout) for _ in range(cfg.layers))
        self.ln = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.head_size)
        init_weights(self)

    def input_ids(self, tokens: torch.Tensor, class_id: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: (B, N) tokens -> (B, N) inputs [V + class, t_0, ..., t_{N-2}]."""
        return torch.cat([(class_id + self.cfg.vocab_size)[:, None], tokens[:, :-1]], dim=1)

    def forward(self, ids: torch.Tensor, cond: torch.Tensor, state: torch.Tensor,
                past_key: torch.Tensor | None = None, past_value: torch.Tensor | None = None):
        """ids, cond, state: (B, n) for positions P..P+n-1, where P = past length.
        past_key/value: (L, B, H, P, Dh) or None. Returns logits (B, n, V) (factorized: (B, n,
        sum(factors)), as the masked prior's), present key/value (L, B, H, P+n, Dh)."""
        if ids.ndim != 2 or cond.shape != ids.shape or state.shape != ids.shape:
            raise ValueError(f"ids, cond and state must be (B, n) alike; got {tuple(ids.shape)}")
        past_len = 0 if past_key is None else past_key.shape[3]
        n = ids.shape[1]
        index = torch.arange(n, device=ids.device) + past_len
        x = self.embed(ids, cond, state, index)  # (B, n, D)
        keys, values = [], []
        for i, block in enumerate(self.blocks):
            past = None if past_key is None else (past_key[i], past_value[i])
            x, (k, v) = block(x, causal=True, past=past)
            keys.append(k)
            values.append(v)
        return self.head(self.ln(x)), torch.stack(keys), torch.stack(values)

    def loss(self, tokens: torch.Tensor, cond: torch.Tensor, state: torch.Tensor, class_id: torch.Tensor,
             weight: torch.Tensor) -> torch.Tensor:
        check_inputs(self.cfg, tokens, cond, state, class_id, self.cfg.vocab_size - 1)
        logits, _, _ = self(self.input_ids(tokens, class_id), cond, state)
        ce = token_cross_entropy(self.cfg, logits, tokens).reshape(-1)
        w = weight.reshape(-1).float()
        return (ce * w).sum() / w.sum().clamp_min(1.0)


@torch.no_grad()
def masked_prior_from_ar(ar: ARPrior) -> MaskedPrior:
    """A masked prior that starts from an autoregressive prior's weights (same sizes): the blocks,
    norms, head and grid embeddings are copied; the AR input ids of the classes become the class
    token's embeddings and [MASK] starts as the mean token embedding. The AR prior follows the
    class (see models/class_probe.py); the masked prior then only has to learn to look both ways."""
    cfg = ar.cfg
    prior = MaskedPrior(cfg)
    own = prior.state_dict()
    for name, value in ar.state_dict().items():
        if name in own and own[name].shape == value.shape:
            own[name].copy_(value)
    if cfg.factors:  # the sub-token tables share names and shapes (copied above); the specials differ
        own["embed.token.special.weight"][0].copy_(ar.embed.token.mean_token())
        own["class_embed.weight"].copy_(ar.embed.token.special.weight)
    else:
        v = cfg.vocab_size
        own["embed.token.weight"][:v].copy_(ar.embed.token.weight[:v])
        own["embed.token.weight"][v].copy_(ar.embed.token.weight[:v].mean(0))
        own["class_embed.weight"].copy_(ar.embed.token.weight[v:v + cfg.num_classes + 1])
    prior.load_state_dict(own)
    return prior


class ARPriorExport(nn.Module):
    """ONNX view with the KV cache always explicit (a prefill passes P = 0 empty tensors)."""

    def __init__(self, prior: ARPrior):
        super().__init__()
        self.prior = prior

    def forward(self, ids, cond, state, past_key, past_value):
        return self.prior(ids, cond, state, past_key, past_value)
