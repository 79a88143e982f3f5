"""transformers' VisionEncoderDecoderModel (e.g. ViT-GPT2) behind the generation engine's interface
(`captioning.generation`: prefill / step / reorder_cache), so caption-zoo decodes it like its own captioners.
`captioning.zoo` loads such folders as entries of kind "vision-encoder-decoder"."""

from __future__ import annotations

import torch
from torch import nn


class VisionEncoderDecoderCaptioner(nn.Module):
    """Adapts a transformers VisionEncoderDecoderModel to the generation engine's interface."""

    def __init__(self, model):
        super().__init__()
        self.model = model.eval()
        self.encoder = model.encoder
        config = model.config
        start = config.decoder_start_token_id
        if start is None:
            start = config.decoder.bos_token_id
        self.start_token_id = start
        self._eos = config.eos_token_id if config.eos_token_id is not None else config.decoder.eos_token_id

    @property
    def eos_token_id(self) -> int:
        return self._eos

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        hidden = self.model.encoder(pixel_values=pixel_values).last_hidden_state  # (B, S, D_enc)
        if getattr(self.model, "enc_to_dec_proj", None) is not None:
            hidden = self.model.enc_to_dec_proj(hidden)  # (B, S, D_dec)
        return hidden

    def _decode(self, tokens: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        out = self.model.decoder(input_ids=tokens[:, None], encoder_hidden_states=state["encoder_hidden_states"],
                                 past_key_values=state["cache"], use_cache=True)
        state["cache"] = out.past_key_values
        return out.logits[:, -1].float(), state

    def prefill(self, features: torch.Tensor) -> tuple[torch.Tensor, dict]:
        from transformers import DynamicCache, EncoderDecoderCache

        state = {"encoder_hidden_states": features, "cache": EncoderDecoderCache(DynamicCache(), DynamicCache())}
        start = torch.full((features.shape[0],), self.start_token_id, dtype=torch.long, device=features.device)
        return self._decode(start, state)

    def step(self, tokens: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        return self._decode(tokens, state)

    @staticmethod
    def reorder_cache(state: dict, index: torch.Tensor) -> dict:
        state["cache"].reorder_cache(index)
        state["encoder_hidden_states"] = state["encoder_hidden_states"].index_select(0, index)
        return state
