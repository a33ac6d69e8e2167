"""Per-token cost of generating with and without a KVCache, at a context of 256 positions.

    python benchmarks/generation_bench.py [--context 256] [--rounds 3] [--backend numpy]

The model is examples/char_gpt.py's (Embedding, learned positions, two causal
TransformerBlocks 64 wide, LayerNorm, head; its weights do not change the cost). Each
round generates ``context - 1`` tokens after a one-token prompt (so the last ones see the
whole context), greedily, once with nnx.generate's cache and once without, interleaved;
it prints the CPU time (user + sys) per token of each, the median over the rounds, and
the ratio measured in the same run. A second pair times only the last quarter of the
context: ``context - 64`` tokens of prompt, then 64 new ones.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import nnx  # noqa: E402
from char_gpt import make_model  # noqa: E402


def per_token(model: nnx.Layer, prompt: np.ndarray, new: int, cache: bool) -> float:
    started = time.process_time()
    nnx.generate(model, prompt, new, temperature=0, cache=cache)
    return (time.process_time() - started) / new


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", default="numpy")
    args = parser.parse_args()
    nnx.use(args.backend)
    model = make_model(args.context, 0).eval()
    rng = np.random.default_rng(0)
    for label, prompt_len in (("whole context", 1), ("last 64 positions", args.context - 64)):
        prompt = rng.integers(0, 96, (1, prompt_len))
        new = args.context - prompt_len
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.rounds):
            for cache in (True, False):
                times[cache].append(per_token(model, prompt, new, cache))
        cached, plain = statistics.median(times[True]), statistics.median(times[False])
        print(f"{label} ({prompt_len} prompt + {new} new tokens, context {args.context}, {args.backend}): "
              f"{1e3 * cached:.2f} ms/token with the cache, {1e3 * plain:.2f} ms/token without: "
              f"{plain / cached:.1f}x faster with the cache (CPU time, median of {args.rounds})")


if __name__ == "__main__":
    main()
