"""CLIPScore and RefCLIPScore (Hessel et al., 2021, "CLIPScore: A Reference-free Evaluation Metric for Image
Captioning"), as the paper and its reference code (github.com/jmhessel/clipscore, clipscore.py) define them:

- every caption, candidate and reference alike, is embedded as ``"A photo depicts " + caption`` with CLIP's
  text tower (truncated to its context length), the image with its vision tower; embeddings are L2-normalised;
- CLIPScore(c, v) = w * max(cos(c, v), 0) with w = 2.5;
- RefCLIPScore(c, R, v) = harmonic mean of CLIPScore(c, v) and max(max over r in R of cos(c, r), 0)
  (w applies to the image side only; the harmonic mean of two zeros is 0);
- the corpus figures are the means over images.

The reference code keeps the text-text maximum unclipped; the paper clips it at 0, as here (they differ only
when a caption is farther from every reference than orthogonal, which CLIP's text embeddings never are in
practice). CLIP runs in float32 (the paper's numbers were computed in float16 on GPU).

The CLIP model (``openai/clip-vit-base-patch32`` by default, or a folder with a CLIPModel, its tokenizer and
preprocessor) is loaded through `captioning.hub.load_pretrained`, so an offline machine without it gets one
`PretrainedLoadError` line saying why; callers report the metric as absent with that reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch32"
CLIPSCORE_W = 2.5
TEXT_PREFIX = "A photo depicts "


@dataclass
class ClipScorer:
    """A CLIP model with both towers, its tokenizer and image preprocessing, and the name it was loaded by."""

    name: str
    model: Any  # transformers CLIPModel
    tokenizer: Any
    image_processor: Any

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def load_clip_scorer(name: str = DEFAULT_CLIP_MODEL, device: str | torch.device | None = None) -> ClipScorer:
    """Load a CLIPModel with its text tower, tokenizer and image processor (hub name or folder).
    Raises captioning.hub.PretrainedLoadError (offline, missing folder, not a CLIP model) with what to do."""
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

    from .config import ConfigValueError
    from .hub import load_pretrained

    model = load_pretrained(lambda: CLIPModel.from_pretrained(name), name, "CLIP model")
    if not isinstance(model, CLIPModel):  # pragma: no cover - from_pretrained raises first
        raise ConfigValueError(f"{name!r} is not a CLIP model with a text tower")
    tokenizer = load_pretrained(lambda: AutoTokenizer.from_pretrained(name), name, "tokenizer")
    processor = load_pretrained(lambda: AutoImageProcessor.from_pretrained(name), name, "image processor")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return ClipScorer(name=name, model=model.to(device).eval(), tokenizer=tokenizer, image_processor=processor)


def _pooled(output: Any) -> torch.Tensor:
    """get_*_features returns the projected embedding (older transformers) or an output holding it."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def embed_texts(scorer: ClipScorer, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """(N, D) L2-normalised CLIP text embeddings of ``TEXT_PREFIX + text``."""
    limit = scorer.model.config.text_config.max_position_embeddings
    rows = []
    for start in range(0, len(texts), batch_size):
        batch = [TEXT_PREFIX + t for t in texts[start:start + batch_size]]
        tokens = scorer.tokenizer(batch, padding=True, truncation=True, max_length=limit, return_tensors="pt")
        with torch.inference_mode():
            rows.append(_pooled(scorer.model.get_text_features(input_ids=tokens["input_ids"].to(scorer.device),
                                                               attention_mask=tokens["attention_mask"].to(scorer.device))).float())
    return torch.nn.functional.normalize(torch.cat(rows), dim=-1).cpu()


def embed_images(scorer: ClipScorer, images: Sequence[Any], batch_size: int = 64) -> torch.Tensor:
    """(N, D) L2-normalised CLIP image embeddings of RGB PIL images."""
    rows = []
    for start in range(0, len(images), batch_size):
        pixels = scorer.image_processor(images=list(images[start:start + batch_size]), return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            rows.append(_pooled(scorer.model.get_image_features(pixel_values=pixels.to(scorer.device))).float())
    return torch.nn.functional.normalize(torch.cat(rows), dim=-1).cpu()


def scores_from_embeddings(images: torch.Tensor, candidates: torch.Tensor,
                           references: Sequence[torch.Tensor] | None = None, w: float = CLIPSCORE_W
                           ) -> dict[str, list[float]]:
    """Per-image CLIPScore (and RefCLIPScore with references) from embeddings: images and candidates (N, D),
    references one (R_i, D) tensor per image; all normalised here, so any scale is accepted."""
    images = torch.nn.functional.normalize(images.double(), dim=-1)
    candidates = torch.nn.functional.normalize(candidates.double(), dim=-1)
    clip_s = w * (images * candidates).sum(-1).clamp(min=0)
    result = {"clipscore": clip_s.tolist()}
    if references is not None:
        ref_s = torch.stack([(torch.nn.functional.normalize(r.double(), dim=-1) @ c).max().clamp(min=0)
                             for c, r in zip(candidates, references)])
        total = clip_s + ref_s
        harmonic = torch.where(total > 0, 2 * clip_s * ref_s / total.clamp(min=1e-12), torch.zeros_like(total))
        result["refclipscore"] = harmonic.tolist()
    return result


def clip_scores(scorer: ClipScorer, images: Sequence[Any], candidates: Sequence[str],
                references: Sequence[Sequence[str]] | None = None) -> dict[str, Any]:
    """Corpus CLIPScore (and RefCLIPScore when references are given) of one caption per image ->
    ``{"clipscore": mean, "refclipscore": mean, "per_image": {"clipscore": [...], ...}}``."""
    if len(images) != len(candidates) or (references is not None and len(references) != len(candidates)):
        raise ValueError(f"CLIPScore needs one caption (and one reference list) per image; got {len(images)} images, "
                         f"{len(candidates)} captions" + ("" if references is None else f", {len(references)} reference lists"))
    if not candidates:
        raise ValueError("No captions to score with CLIPScore")
    image_emb = embed_images(scorer, images)
    cand_emb = embed_texts(scorer, candidates)
    ref_emb = None
    if references is not None:
        flat = [r for refs in references for r in refs]
        flat_emb = embed_texts(scorer, flat)
        ref_emb, start = [], 0
        for refs in references:
            ref_emb.append(flat_emb[start:start + len(refs)])
            start += len(refs)
    per = scores_from_embeddings(image_emb, cand_emb, ref_emb)
    return {**{k: sum(v) / len(v) for k, v in per.items()}, "per_image": per}


def clipscore_info(name: str) -> dict[str, Any]:
    """What the CLIPScore numbers were computed with, to store beside them."""
    return {"clipscore_model": name, "clipscore_w": CLIPSCORE_W, "clipscore_text_prefix": TEXT_PREFIX,
            "clipscore_definition": "Hessel et al. 2021: w*max(cos,0); RefCLIPScore = harmonic mean with "
                                    "max(max_ref cos, 0)"}
