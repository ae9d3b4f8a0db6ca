"""Chronos checkpoints built offline with the library's own config and model classes.

No weights can be downloaded here, so a checkpoint is built from an architecture (random
weights, seeded) and saved with `save_pretrained`; it loads back through
`BaseChronosPipeline.from_pretrained(path)`, exactly as `amazon/chronos-2` would from the hub.
Architectures:
  release   the published sizes (Chronos-2: d_model 768, d_ff 3072, 12 layers, 12 heads, ~119 M
            parameters; Chronos-Bolt-small: d_model 512, d_ff 2048, 6 + 6 layers, 8 heads)
  small     a few hundred thousand parameters: pretrained here on bundled series in minutes
  tiny      for tests: builds and exports in seconds
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHRONOS2_QUANTILES = [0.01, 0.05, *[round(0.1 * i, 1) for i in range(1, 10)], 0.95, 0.99]
BOLT_QUANTILES = [round(0.1 * i, 1) for i in range(1, 10)]

CHRONOS2_SIZES: dict[str, dict[str, Any]] = {
    "release": {"d_model": 768, "d_kv": 64, "d_ff": 3072, "num_layers": 12, "num_heads": 12},
    "small": {"d_model": 64, "d_kv": 16, "d_ff": 128, "num_layers": 2, "num_heads": 4},
    "tiny": {"d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 1, "num_heads": 4},
}
BOLT_SIZES: dict[str, dict[str, Any]] = {
    "release": {**CHRONOS2_SIZES["release"], "d_model": 512, "d_ff": 2048, "num_layers": 6, "num_heads": 8},
    "small": dict(CHRONOS2_SIZES["small"]),
    "tiny": dict(CHRONOS2_SIZES["tiny"]),
}
BOLT_DECODER_LAYERS = {"release": 6, "small": 1, "tiny": 1}


def chronos2(size: str, context_length: int = 2048, max_output_patches: int = 64, seed: int = 0) -> Any:
    """A Chronos2Pipeline of a named size, random weights (seeded)."""
    import torch
    from chronos.chronos2 import Chronos2Model, Chronos2Pipeline
    from chronos.chronos2.config import Chronos2CoreConfig

    config = Chronos2CoreConfig(
        **CHRONOS2_SIZES[size],
        dropout_rate=0.1,
        feed_forward_proj="relu",
        chronos_config={
            "context_length": context_length,
            "input_patch_size": 16,
            "input_patch_stride": 16,
            "output_patch_size": 16,
            "quantiles": CHRONOS2_QUANTILES,
            "use_reg_token": True,
            "use_arcsinh": True,
            "max_output_patches": max_output_patches,
            "time_encoding_scale": context_length,
        },
    )
    config.architectures = ["Chronos2Model"]
    config.chronos_pipeline_class = "Chronos2Pipeline"
    torch.manual_seed(seed)
    return Chronos2Pipeline(model=Chronos2Model(config).eval())


def chronos_bolt(size: str, context_length: int = 2048, prediction_length: int = 64, seed: int = 0) -> Any:
    """A ChronosBoltPipeline of a named size, random weights (seeded)."""
    import torch
    from chronos.chronos_bolt import ChronosBoltModelForForecasting, ChronosBoltPipeline
    from transformers import T5Config

    config = T5Config(
        **BOLT_SIZES[size],
        num_decoder_layers=BOLT_DECODER_LAYERS[size],
        dropout_rate=0.1,
        feed_forward_proj="relu",
        is_encoder_decoder=True,
        decoder_start_token_id=0,
        pad_token_id=0,
        vocab_size=2,
    )
    config.chronos_config = {
        "context_length": context_length,
        "prediction_length": prediction_length,
        "input_patch_size": 16,
        "input_patch_stride": 16,
        "quantiles": BOLT_QUANTILES,
        "use_reg_token": True,
    }
    config.architectures = ["ChronosBoltModelForForecasting"]
    config.chronos_pipeline_class = "ChronosBoltPipeline"
    torch.manual_seed(seed)
    return ChronosBoltPipeline(model=ChronosBoltModelForForecasting(config).eval())


def load(path_or_id: str | Path) -> Any:
    """Any Chronos checkpoint: a local folder written by save_pretrained, or a hub id."""
    from chronos import BaseChronosPipeline

    return BaseChronosPipeline.from_pretrained(str(path_or_id), device_map="cpu", dtype="float32")
