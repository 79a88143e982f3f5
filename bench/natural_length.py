"""Benchmark: decoding when captions end at their own EOS, ours against batched transformers.

Run (from the repository root):

    .venv/bin/python bench/natural_length.py                # GPT-2 124M, 16 captions of up to 30 tokens
    .venv/bin/python bench/natural_length.py --isa avx2     # as on an AVX2-only CPU (see bench/generation.py)
    .venv/bin/python bench/natural_length.py --quick        # a tiny GPT-2: checks the script runs

`bench/generation.py` times every engine at exactly 20 new tokens (EOS suppressed), the same work for all. Real
captions end at different lengths, and there the engines differ in what they compute: ours takes a caption that
has ended (greedy) or an image whose beams can no longer change (beam search) out of the batch, while
transformers' batched `generate` feeds every row until the batch's longest caption ends.

What it builds: GPT-2 124M (`GPT2Config()` defaults) at random init, nothing downloaded. A random GPT-2 almost
never says EOS, so its EOS embedding (tied to the LM head) is scaled by `--eos-scale` (5): captions then end
anywhere between 0 and `--max-new-tokens` tokens, and the script prints their lengths. The prompts are random
prefix embeddings (16 x K=10 x 768), as a mapper would give; only decoding is timed (no encoder).

What it times, alternating (each measurement once per round, best of `--repeats` rounds): greedy and beam 5,
ours (`captioning.generation.generate` on `captioning.gpt2_runner`) and transformers'
`generate(inputs_embeds=..., num_beams=...)` at the same batch; it checks that both give the same captions.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from generation import ISA_CAPS, alternate, cpu_isa
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.utils import logging as hf_logging

from captioning.generation import generate, get_settings
from captioning.gpt2_runner import runner_for


class RunnerModel:
    """The engine's model calls on a bare GPT-2 fed prefix embeddings (what PrefixCaptioner does after its
    mapper)."""

    prefill_takes_max_new_tokens = True

    def __init__(self, decoder: GPT2LMHeadModel):
        self.runner = runner_for(decoder, "fp32")
        self.eos_token_id = decoder.config.eos_token_id

    def prefill(self, prefix: torch.Tensor, max_new_tokens: int | None = None):
        return self.runner.prefill(prefix, max_new_tokens=max_new_tokens)

    def step(self, tokens: torch.Tensor, cache):
        return self.runner.step(tokens, cache)

    def reorder_cache(self, cache, index: torch.Tensor):
        return self.runner.reorder_cache(cache, index)


def transformers_captions(decoder: GPT2LMHeadModel, prefix: torch.Tensor, beams: int, max_new: int) -> list[list[int]]:
    eos = decoder.config.eos_token_id
    with torch.inference_mode():
        out = decoder.generate(inputs_embeds=prefix, attention_mask=torch.ones(prefix.shape[:2], dtype=torch.long),
                               num_beams=beams, max_new_tokens=max_new, do_sample=False, pad_token_id=eos,
                               eos_token_id=eos)
    return [row[: row.index(eos)] if eos in row else row for row in out.tolist()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--repeats", type=int, default=3, help="alternating rounds, best kept (default 3)")
    p.add_argument("--images", type=int, default=16, help="captions per batch (default 16)")
    p.add_argument("--max-new-tokens", type=int, default=30, help="caption length limit (default 30)")
    p.add_argument("--eos-scale", type=float, default=5.0, help="factor on the EOS embedding (default 5)")
    p.add_argument("--quick", action="store_true", help="a tiny GPT-2: checks the script runs, in seconds")
    p.add_argument("--isa", choices=("native", *ISA_CAPS), default="native",
                   help="avx2: cap torch, oneDNN, MKL and fbgemm at AVX2 (default native)")
    args = p.parse_args(argv)
    for name in ("threads", "repeats", "images", "max_new_tokens"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    caps = ISA_CAPS.get(args.isa, {})
    if any(os.environ.get(key) != value for key, value in caps.items()):  # read when torch loads: re-run
        command = [sys.executable, str(Path(__file__).resolve()), *(sys.argv[1:] if argv is None else argv)]
        os.execve(sys.executable, command, {**os.environ, **caps})
    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    config = GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=300, n_positions=64, bos_token_id=299,
                        eos_token_id=299) if args.quick else GPT2Config()
    torch.manual_seed(1000)
    decoder = GPT2LMHeadModel(config).eval()
    eos = config.eos_token_id
    with torch.no_grad():
        decoder.transformer.wte.weight[eos] *= args.eos_scale
    prefix = torch.randn(args.images, 3 if args.quick else 10, config.n_embd) * 0.5
    model = RunnerModel(decoder)
    print(f"# bench/natural_length.py | {'quick' if args.quick else 'GPT-2 124M'} | torch {torch.__version__} | "
          f"{args.threads} threads\n# CPU: {cpu_isa()}", flush=True)

    rows = []
    for label, preset, beams in (("greedy", "greedy", 1), ("beam 5", "consistent", 5)):
        settings = get_settings(preset, max_new_tokens=args.max_new_tokens)
        ours = generate(model, prefix, settings)
        theirs = transformers_captions(decoder, prefix, beams, args.max_new_tokens)
        same = sum(caps[0] == row for caps, row in zip(ours.tokens, theirs))
        lengths = sorted(len(caps[0]) for caps in ours.tokens)
        best = alternate({"ours": lambda s=settings: generate(model, prefix, s),
                          "transformers": lambda b=beams: transformers_captions(decoder, prefix, b,
                                                                                args.max_new_tokens)},
                         args.repeats)
        print(f"{label}: caption lengths {lengths}; same captions {same}/{len(theirs)}; ours {best['ours']:.2f} s, "
              f"batched transformers {best['transformers']:.2f} s", flush=True)
        rows.append((label, lengths, same, len(theirs), best))
    print()
    command = "python bench/natural_length.py" + (" " + " ".join(sys.argv[1:]) if argv is None and sys.argv[1:] else "")
    print(f"Command: `{command}`. CPU: {cpu_isa()}.")
    print()
    print("| decoding, captions ending at EOS | lengths (min / median / max) | same captions | ours s | "
          "transformers s | ours vs transformers |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, lengths, same, total, best in rows:
        median = lengths[len(lengths) // 2]
        print(f"| {label} | {lengths[0]} / {median} / {lengths[-1]} | {same}/{total} | {best['ours']:.2f} | "
              f"{best['transformers']:.2f} | {best['transformers'] / best['ours']:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
