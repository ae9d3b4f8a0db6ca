"""A forecast request's series as the rows Chronos-2 takes, laid out as the library lays them out
(chronos.chronos2.preprocess and dataset): per series, its target variates first, then its
past-only covariates, then its known-future covariates (each kind sorted by name); rows of one
series share a group id, so they attend to each other and to no other series, unless the call
asks for cross-learning, where every series of a batch shares one group.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from onnxship.forecasting import categorical

LIBRARY_BATCH_ROWS = 256  # Chronos2Pipeline.predict's batch_size: cross-learning groups by batch


@dataclass
class SeriesTask:
    """One item of a call: target [n_variates, length] (NaN = missing); covariates by name, each
    [length] in `past` (float32, or an object array of strings / None = categorical) and, for
    those known ahead, [horizon] in `future`."""

    target: np.ndarray
    past: dict[str, np.ndarray] = field(default_factory=dict)
    future: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return self.target.shape[-1]


@dataclass
class Rows:
    """Every series of a call as rows: context [rows, T] (NaN left-padded), future [rows, h] (NaN
    where unknown), group ids [rows], and each series' target rows [start, end)."""

    context: np.ndarray
    future: np.ndarray
    group_ids: np.ndarray
    targets: list[tuple[int, int]]


def is_categorical(values: np.ndarray) -> bool:
    return values.dtype == object


def row_order(task: SeriesTask) -> list[str]:
    """Covariate rows: past-only first, then known-future, each sorted by name."""
    names = sorted(task.past)
    return [n for n in names if n not in task.future] + [n for n in names if n in task.future]


def encoded_covariates(tasks: list[SeriesTask]) -> list[dict[str, tuple[np.ndarray, np.ndarray | None]]]:
    """Per task, name -> (past float32, future float32 or None); categorical ones encoded over
    the whole call, as the library encodes one call's inputs."""
    out: list[dict] = [{} for _ in tasks]
    for name in sorted(tasks[0].past) if tasks else []:
        pasts = [t.past[name] for t in tasks]
        futures = [t.future.get(name) for t in tasks]
        if any(is_categorical(p) for p in pasts) or any(f is not None and is_categorical(f) for f in futures):
            single = tasks[0].target.shape[0] == 1
            targets = [t.target[0] if single else np.empty(0, np.float32) for t in tasks]
            try:
                pasts, futures = categorical.encode(
                    [np.asarray(p, dtype=object) for p in pasts],
                    [None if f is None else np.asarray(f, dtype=object) for f in futures],
                    targets,
                )
            except categorical.UnseenCategory as err:
                raise categorical.UnseenCategory(err.args[0], err.args[1], name) from None
        for i, (p, f) in enumerate(zip(pasts, futures, strict=True)):
            out[i][name] = (np.asarray(p, np.float32), None if f is None else np.asarray(f, np.float32))
    return out


def prepared(tasks: list[SeriesTask], horizon: int) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Per task: (context rows [n_targets + n_covariates, length], future rows [same, horizon],
    n_targets), as chronos.chronos2.preprocess prepares a list of dict inputs."""
    encoded = encoded_covariates(tasks)
    out = []
    for task, covariates in zip(tasks, encoded, strict=True):
        order = row_order(task)
        context = np.concatenate([task.target.astype(np.float32)] + [covariates[n][0][None] for n in order])
        future = np.full((len(context), horizon), np.nan, dtype=np.float32)
        for row, name in enumerate(order, start=len(task.target)):
            known = covariates[name][1]
            if known is not None:
                future[row] = known[:horizon]
        out.append((context, future, len(task.target)))
    return out


def library_batches(sizes: list[int], batch_rows: int = LIBRARY_BATCH_ROWS) -> list[int]:
    """The batch each task falls in, as Chronos2Dataset fills batches: tasks are added while the
    batch holds fewer than `batch_rows` rows."""
    batch, rows, out = 0, 0, []
    for size in sizes:
        if rows >= batch_rows:
            batch, rows = batch + 1, 0
        out.append(batch)
        rows += size
    return out


def layout(tasks: list[SeriesTask], horizon: int, cross_learning: bool = False) -> Rows:
    """Every task of a call in one set of rows (one graph call)."""
    items = prepared(tasks, horizon)
    length = max(c.shape[1] for c, _, _ in items)
    rows = sum(len(c) for c, _, _ in items)
    context = np.full((rows, length), np.nan, dtype=np.float32)
    groups = library_batches([len(c) for c, _, _ in items]) if cross_learning else range(len(items))
    group_ids = np.empty(rows, dtype=np.int64)
    targets, start = [], 0
    for (rows_of, _, n_targets), group in zip(items, groups, strict=True):
        context[start : start + len(rows_of), length - rows_of.shape[1] :] = rows_of
        group_ids[start : start + len(rows_of)] = group
        targets.append((start, start + n_targets))
        start += len(rows_of)
    future = np.concatenate([f for _, f, _ in items]) if items else np.empty((0, horizon), np.float32)
    return Rows(context, future, group_ids, targets)
