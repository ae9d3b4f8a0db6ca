"""Time-ordered splits: train, val and test are consecutive stretches of the rows (or of the
series), in that order, so no split sees the future of a later one."""

from __future__ import annotations

from omegaconf import DictConfig

from onnxship.errors import ConfigError

SPLITS = ("train", "val", "test")


def split_bounds(n: int, split: DictConfig) -> dict[str, tuple[int, int]]:
    fractions = [float(split[s]) for s in SPLITS]
    if any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ConfigError(
            "data.split fractions must be positive and sum to 1, "
            f"got {dict(zip(SPLITS, fractions, strict=True))}"
        )
    cut1 = int(n * fractions[0])
    cut2 = cut1 + int(n * fractions[1])
    return {"train": (0, cut1), "val": (cut1, cut2), "test": (cut2, n)}
