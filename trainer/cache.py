"""On-disk cache of image embeddings for training with a frozen encoder.

A frozen encoder gives the same embedding for the same image every epoch, so it runs once per unique
image. Embeddings are keyed by encoder (`captioning.zoo.encoder_key`: weights fingerprint, preprocessing,
pooled or patch features; the same key the captioning pipeline shares encoder passes by) and by image
*content* (sha256 of the file), so renamed or duplicated files are reused and an edited image is recomputed. Each computation pass writes one safetensors shard
`<cache_dir>/<encoder_key>/shard-*.safetensors` whose tensor names are content hashes; later epochs and
later runs read the shards back. No pickles.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from captioning.images import image_content_hash, load_image
from captioning.model import module_fingerprint
from captioning.zoo import encoder_key

SHARD_SIZE = 4096  # embeddings per shard file


class EmbeddingCache:
    def __init__(self, cache_dir: str | os.PathLike, key: str):
        self.key = key
        self.folder = Path(cache_dir) / key
        self.last_computed = 0
        self.last_reused = 0

    @classmethod
    def for_model(cls, cache_dir: str | os.PathLike, model, image_processor) -> EmbeddingCache:
        """The cache of `model`'s encoder features under `image_processor` (keyed by `encoder_key`)."""
        return cls(cache_dir, encoder_key(module_fingerprint(model.encoder), image_processor, model.uses_patches))

    def _stored(self) -> dict[str, Path]:
        """content hash -> shard holding it."""
        index: dict[str, Path] = {}
        for shard in sorted(self.folder.glob("shard-*.safetensors")):
            with safe_open(shard, framework="pt") as f:
                index.update({key: shard for key in f.keys()})
        return index

    def get_or_compute(self, images: dict[str, Path], model, image_processor, *, device="cpu", batch_size: int = 64,
                       progress: bool = False, write: bool = True) -> dict[str, torch.Tensor]:
        """image_id -> embedding (CPU float32) for every image, computing only what is not cached.

        write=False only reads (the non-main processes of a multi-process run, after the main one filled the
        cache): an image missing then is an error, not a second writer.
        """
        from tqdm import tqdm

        hashes = {image_id: image_content_hash(path) for image_id, path in images.items()}
        stored = self._stored()
        missing = sorted({h for h in hashes.values() if h not in stored})
        by_hash: dict[str, torch.Tensor] = {}
        by_shard: dict[Path, list[str]] = {}
        for h in set(hashes.values()) - set(missing):
            by_shard.setdefault(stored[h], []).append(h)
        for shard, keys in by_shard.items():
            with safe_open(shard, framework="pt") as f:
                by_hash.update({k: f.get_tensor(k) for k in keys})
        if missing and not write:
            raise RuntimeError(f"the embedding cache {self.folder} lacks {len(missing)} of {len(set(hashes.values()))} "
                               f"images that the main process should have written; delete the folder and rerun")
        if missing:
            path_of = {h: images[i] for i, h in hashes.items()}
            encoder = model.encoder
            was_training = encoder.training
            encoder.eval()
            self.folder.mkdir(parents=True, exist_ok=True)
            new: dict[str, torch.Tensor] = {}
            bar = tqdm(total=len(missing), desc="embedding images", unit="img", disable=not progress, leave=False)
            for start in range(0, len(missing), batch_size):
                chunk = missing[start:start + batch_size]
                pixels = image_processor(images=[load_image(path_of[h]) for h in chunk], return_tensors="pt")["pixel_values"]
                with torch.inference_mode():
                    feats = model.encode_images(pixels.to(device)).float().cpu()  # (b, embed_dim)
                new.update({h: feats[i].clone() for i, h in enumerate(chunk)})
                bar.update(len(chunk))
                if len(new) >= SHARD_SIZE:
                    self._write(new)
                    by_hash.update(new)
                    new = {}
            bar.close()
            if new:
                self._write(new)
                by_hash.update(new)
            encoder.train(was_training)
        self.last_computed, self.last_reused = len(missing), len(set(hashes.values())) - len(missing)
        return {image_id: by_hash[h] for image_id, h in hashes.items()}

    def _write(self, tensors: dict[str, torch.Tensor]) -> None:
        # Written under a temporary name and renamed: a crash never leaves a half shard that looks complete.
        final = self.folder / f"shard-{uuid.uuid4().hex}.safetensors"
        tmp = final.with_suffix(".tmp")
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp)
        os.replace(tmp, final)
