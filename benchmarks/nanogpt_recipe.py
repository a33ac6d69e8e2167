"""A nanoGPT-style character GPT trained in nnx and in PyTorch from the same weights and batches.

The nnx side is written as the PyTorch recipe is: the embedding tied to the output head,
GPT-2's initialisation drawn in PyTorch and loaded by name (``nnx.interop``), one AdamW
with two parameter groups (``nnx.optim.decay_groups``), (batch, time, vocabulary) logits
into ``SoftmaxCrossEntropy``, linear warm-up and cosine decay, gradients clipped at 1.0.
The text is this repository's ARCHITECTURE.md, read as characters. Prints both losses
every 50 steps and the largest difference over the run; ``--check TOL`` exits 1 when it
is above TOL. Run:

    python benchmarks/nanogpt_recipe.py [--steps 300] [--dtype float32] [--layers 4] [--width 128]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

import nnx

TEXT = Path(__file__).resolve().parent.parent / "ARCHITECTURE.md"


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.gelu(x, approximate="tanh")  # nnx's GELU is the tanh form


class TorchGPT(nn.Module):
    """The PyTorch reference: token and position embeddings, pre-LayerNorm blocks, a tied head."""

    def __init__(self, vocab: int, block: int, width: int, heads: int, layers: int) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, width)
        self.wpe = nn.Parameter(torch.zeros(block, width))
        self.blocks = nn.ModuleList(nn.TransformerEncoderLayer(
            width, heads, 4 * width, dropout=0.0, activation=gelu_tanh, batch_first=True, norm_first=True)
            for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.wte.weight
        with torch.no_grad():  # GPT-2's initialisation
            for name, p in self.named_parameters():
                if name.endswith(("out_proj.weight", "linear2.weight")):
                    p.normal_(0.0, 0.02 / math.sqrt(2 * layers))
                elif p.dim() == 2:
                    p.normal_(0.0, 0.02)
                elif name.endswith("bias") and "norm" not in name and not name.startswith("ln_f"):
                    p.zero_()  # the products' biases; the norms keep their 1s and 0s

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        x = self.wte(idx) + self.wpe[:t]
        mask = nn.Transformer.generate_square_subsequent_mask(t, dtype=x.dtype)
        for block in self.blocks:
            x = block(x, src_mask=mask, is_causal=True)
        return self.head(self.ln_f(x))


def nnx_gpt(vocab: int, block: int, width: int, heads: int, layers: int, dtype: str) -> nnx.Sequential:
    """The same network in nnx, its head tied to its embedding."""
    emb = nnx.Embedding(vocab, width, dtype=dtype)
    return nnx.Sequential(emb, nnx.PositionalEmbedding(block, width, dtype=dtype),
                          *[nnx.TransformerBlock(width, heads, causal=True, dtype=dtype) for _ in range(layers)],
                          nnx.LayerNorm(width, dtype=dtype),
                          nnx.Linear(width, vocab, bias=False, weight=emb.weight, dtype=dtype))


def torch_names(layers: int) -> dict[str, str]:
    """nnx's Sequential positions to the reference's attribute names."""
    return {"0.": "wte.", "1.weight": "wpe", **{f"{2 + i}.": f"blocks.{i}." for i in range(layers)},
            f"{2 + layers}.": "ln_f.", f"{3 + layers}.": "head."}


def lr_at(t: int, lr: float, min_lr: float, warmup: int, steps: int) -> float:
    """Linear warm-up, then a half cosine down to ``min_lr`` (the reference's schedule)."""
    if t < warmup:
        return lr * (t + 1) / (warmup + 1)
    progress = min(1.0, (t - warmup) / (steps - warmup))
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--block", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--check", type=float, default=None, metavar="TOL")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_default_dtype(getattr(torch, args.dtype))
    text = TEXT.read_text()
    chars = sorted(set(text))
    data = np.array([chars.index(c) for c in text], dtype=np.int64)
    rng = np.random.default_rng(0)
    lr, min_lr, warmup, decay = 1e-3, 1e-4, max(1, args.steps // 10), 0.1

    ref = TorchGPT(len(chars), args.block, args.width, args.heads, args.layers)
    model = nnx_gpt(len(chars), args.block, args.width, args.heads, args.layers, args.dtype)
    nnx.interop.load_torch_state_dict(model, ref.state_dict(), names=torch_names(args.layers))

    opt = nnx.AdamW(nnx.optim.decay_groups(model, decay), lr=lr, betas=(0.9, 0.95))
    schedule = nnx.optim.CosineWithWarmup(opt, warmup, args.steps, min_lr=min_lr)
    loss = nnx.SoftmaxCrossEntropy()
    decayed = [p for n, p in ref.named_parameters() if p.dim() >= 2 and n != "wpe"]
    rest = [p for n, p in ref.named_parameters() if not (p.dim() >= 2 and n != "wpe")]
    ref_opt = torch.optim.AdamW([{"params": decayed, "weight_decay": decay}, {"params": rest, "weight_decay": 0.0}],
                                lr=lr, betas=(0.9, 0.95))
    ref_schedule = torch.optim.lr_scheduler.LambdaLR(ref_opt, lambda t: lr_at(t, lr, min_lr, warmup, args.steps) / lr)

    worst = 0.0
    for step in range(args.steps):
        starts = rng.integers(0, len(data) - args.block - 1, args.batch)
        x = np.stack([data[s:s + args.block] for s in starts])
        y = np.stack([data[s + 1:s + args.block + 1] for s in starts])

        opt.zero_grad()
        value = loss.forward(model.forward(x), y)
        model.backward(loss.backward(), input_grad=False)
        nnx.optim.clip_grad_norm(model.parameters(), 1.0)
        opt.step()
        schedule.step()

        ref_opt.zero_grad()
        ref_value = nn.functional.cross_entropy(ref(torch.from_numpy(x)).flatten(0, 1), torch.from_numpy(y).flatten())
        ref_value.backward()
        nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
        ref_opt.step()
        ref_schedule.step()

        ours, theirs = float(value), ref_value.item()
        worst = max(worst, abs(ours - theirs))
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step:4d}  nnx {ours:.7f}  torch {theirs:.7f}  difference {ours - theirs:+.2e}")
    print(f"{args.steps} steps in {args.dtype}: largest loss difference {worst:.2e}")
    return 1 if args.check is not None and not worst <= args.check else 0


if __name__ == "__main__":
    sys.exit(main())
