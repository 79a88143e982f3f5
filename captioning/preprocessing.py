"""Image preprocessing for the vision encoders: resize, centre-crop, normalise (transformers' processors).

The pure-PIL processors are used so that torchvision is never needed.
"""

from __future__ import annotations

from transformers import AutoImageProcessor

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]  # OpenAI CLIP's training statistics
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def make_image_processor(encoder_type: str, image_size: int):
    """A processor for an encoder built from a config: CLIP's (shortest edge + centre crop) or ViT's (resize)."""
    if encoder_type == "clip":
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

        return CLIPImageProcessorPil(size={"shortest_edge": image_size},
                                     crop_size={"height": image_size, "width": image_size},
                                     image_mean=CLIP_MEAN, image_std=CLIP_STD)
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    return ViTImageProcessorPil(size={"height": image_size, "width": image_size})


def load_image_processor(name_or_path: str, image_size: int | None = None):
    """The pretrained encoder's own processor (hub name or folder), optionally at another image size."""
    processor = AutoImageProcessor.from_pretrained(name_or_path)
    if image_size is not None:
        if "shortest_edge" in (processor.size or {}):
            processor.size = {"shortest_edge": image_size}
        else:
            processor.size = {"height": image_size, "width": image_size}
        if getattr(processor, "crop_size", None):
            processor.crop_size = {"height": image_size, "width": image_size}
    return processor
