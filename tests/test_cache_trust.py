"""The cache is never the trust anchor, and following never stops silently (issue 19, findings 1,
3, 4, 5, 6, 8, 9): real watcher processes over a real SQLite registry with tiny versions, an
attacker who can write the cache (not the server's private state, not the registry database),
held locks, slow and memory-hungry models, deleted runs. Seconds each, no pipeline."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from onnxship.version.files import TamperedCopy
from onnxship.version.manifest import file_manifest
from onnxship.version.verify import RejectedModel, vouched
from serving.http.store import load_verified
from serving.registry import cache as cache_module
from serving.registry.fetch import Stalled, download
from serving.registry.state import TrustedState
from tests import tiny_versions
from tests.registry_helpers import champion_registry, register_folder, trust_tags
from tests.watching import Watcher, alias, is_event

GATES = {"export": True, "parity": True, "benchmark": True}


def evil_regressor():
    """A consistent forgery: a valid graph (prediction = -1000 for any row) with matching metadata."""
    graph = tiny_versions.regressor()
    graph.graph.initializer[0].CopyFrom(
        __import__("onnx").numpy_helper.from_array(np.full((3, 1), -1000 / 6, np.float32), "w")
    )
    return graph


def registry_with(root: Path, **graphs) -> str:
    return champion_registry(root, {name: (graph, "regression") for name, graph in graphs.items()})


@contextmanager
def registry_down(uri: str):
    """The same registry URI, unreachable for a while (its database swapped for garbage)."""
    db = Path(uri.removeprefix("sqlite:///"))
    kept = db.with_name("kept.db")
    db.rename(kept)
    db.write_bytes(b"not a database" * 100)
    try:
        yield
    finally:
        kept.replace(db)


def first_ready(uri: str, cache: Path, *models: str) -> dict[str, dict]:
    watcher = Watcher(uri, list(models), cache)
    try:
        return {m: watcher.wait(is_event("ready", m)) for m in models}
    finally:
        watcher.stop()


def forge(folder: Path, work: Path) -> dict[str, str]:
    """Swap the cached copy for a consistent forged pair and forge every cache-side record of it
    (the alias record and probe marker this project kept in the cache before issue 19)."""
    forged = tiny_versions.write_version(work / "forged", evil_regressor(), "regression")
    for name in ("model.onnx", "onnxship.json", "benchmark.json"):
        shutil.copy(forged / name, folder / name)
    manifest = file_manifest(folder)
    record = {"version": "1", "source": "x", "manifest": manifest, "gates": GATES, "path": str(folder)}
    (folder.parent / "champion.json").write_text(json.dumps(record))
    (folder.with_name(folder.name + ".verified")).write_text(json.dumps(manifest, sort_keys=True))
    return manifest


def test_a_forged_copy_in_the_cache_is_never_served_at_start(tmp_path):
    """Finding 1: a consistent forged pair plus a rewritten record inside the cache was served
    after a restart (-1000 where the honest model says 14), with the registry down too."""
    uri = registry_with(tmp_path / "registry", tiny_reg=tiny_versions.regressor())
    cache = tmp_path / "cache"
    honest = first_ready(uri, cache, "tiny_reg")["tiny_reg"]
    forged = forge(Path(honest["path"]), tmp_path)
    # the registry down: the forged copy is refused, nothing is announced
    with registry_down(uri):
        watcher = Watcher(uri, ["tiny_reg"], cache, "--serve-local-copy")
        try:
            refused = watcher.wait(is_event("rejected", "tiny_reg"))
            assert "local copy" in refused["reason"] and "sha256 of model.onnx" in refused["reason"]
            watcher.wait(is_event("registry_error", "tiny_reg"))
            assert not [e for e in watcher.events if e["event"] == "ready"]
        finally:
            watcher.stop()
    # the registry up: refused again, then the registry's own bytes fetched and announced
    watcher = Watcher(uri, ["tiny_reg"], cache, "--serve-local-copy")
    try:
        watcher.wait(is_event("rejected", "tiny_reg"))
        ready = watcher.wait(is_event("ready", "tiny_reg", "1"))
    finally:
        watcher.stop()
    assert ready["manifest"] == honest["manifest"] != {k: forged[k] for k in honest["manifest"]}
    assert file_manifest(Path(ready["path"])) == honest["manifest"]


def test_the_registry_answer_is_compared_by_manifest_not_by_version_number(tmp_path):
    """Finding 1: a local copy was 'confirmed' whenever the registry named the same version number.
    Here the registry's version 1 now vouches for other bytes (its files and tags rewritten by
    the registry's owner): the local copy is withdrawn and the registry's version 1 served."""
    uri = registry_with(tmp_path / "registry", tiny_reg=tiny_versions.regressor())
    cache = tmp_path / "cache"
    first = first_ready(uri, cache, "tiny_reg")["tiny_reg"]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    mv = client.get_model_version("tiny_reg", "1")
    new = tiny_versions.write_version(tmp_path / "new", evil_regressor(), "regression")
    for name in ("model.onnx", "onnxship.json", "benchmark.json"):
        shutil.copy(new / name, Path(mv.source.removeprefix("file://")) / name)
    for key, value in trust_tags(new, mv.run_id).items():
        client.set_model_version_tag("tiny_reg", "1", key, value)
    watcher = Watcher(uri, ["tiny_reg"], cache, "--serve-local-copy")
    try:
        local = watcher.wait(is_event("ready", "tiny_reg"))
        assert "local copy" in local["origin"] and local["manifest"] == first["manifest"]
        withdrawn = watcher.wait(is_event("withdrawn", "tiny_reg", "1"))
        assert "differs from what the registry vouches for" in withdrawn["reason"]
        again = watcher.wait(lambda e: is_event("ready", "tiny_reg")(e) and "origin" not in e)
    finally:
        watcher.stop()
    assert again["manifest"] == file_manifest(new) != first["manifest"]
    assert not [e for e in watcher.events if e["event"] == "confirmed"]


def test_the_private_state_holds_no_registry_uri_and_is_only_ours(tmp_path):
    """Finding 2: the cache record held the tracking URI (credentials and all), mode 0644."""
    uri = registry_with(tmp_path / "registry", tiny_reg=tiny_versions.regressor())
    cache = tmp_path / "cache"
    first_ready(uri, cache, "tiny_reg")
    state = tmp_path / "cache.state"
    assert state.stat().st_mode & 0o777 == 0o700
    for path in (state / "tiny_reg").iterdir():
        assert path.stat().st_mode & 0o777 == 0o600
        # the registry's URI (scheme and database path); the artifact folder it names may appear
        recorded = path.read_text()
        assert "sqlite" not in recorded and uri.removeprefix("sqlite:///") not in recorded
    for path in (cache / "tiny_reg").glob("*.json"):
        assert set(json.loads(path.read_text())) == {"version"}  # a claim for pruning, nothing more


def test_the_server_loads_exactly_the_bytes_the_manifest_names(tmp_path):
    """Read in the code: the folder was hashed, then loaded from disk again (verify-then-load race)."""
    folder = tiny_versions.write_version(tmp_path / "v1", tiny_versions.regressor(), "regression")
    manifest = file_manifest(folder)
    loaded = load_verified("tiny_reg", "1", folder, manifest, warmup_calls=1, max_threads=1)
    assert loaded.sha256 == manifest["model.onnx"]
    forged = tiny_versions.write_version(tmp_path / "forged", evil_regressor(), "regression")
    shutil.copy(forged / "model.onnx", folder / "model.onnx")  # swapped after the watcher's check
    with pytest.raises(TamperedCopy, match=r"model\.onnx on disk is not the file the registry vouches for"):
        load_verified("tiny_reg", "1", folder, manifest, warmup_calls=1, max_threads=1)


def test_a_version_whose_run_was_deleted_is_rejected(tmp_path):
    """Finding 9: a version whose packaging run was deleted was served."""
    uri = registry_with(tmp_path / "registry", tiny_reg=tiny_versions.regressor())
    version = register_folder(
        uri, "tiny_reg", tiny_versions.write_version(tmp_path / "v2", tiny_versions.regressor(), "regression")
    )
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.delete_run(client.get_model_version("tiny_reg", version).run_id)
    alias(uri, "tiny_reg", version)
    watcher = Watcher(uri, ["tiny_reg"], tmp_path / "cache")
    try:
        rejected = watcher.wait(is_event("rejected", "tiny_reg", version))
    finally:
        watcher.stop()
    assert "the run that packaged version 2 was deleted" in rejected["reason"]


# ---- the cache shared by servers of other aliases -------------------------------------------------


def trusted_version(uri: str, name: str, version: str):
    return vouched(MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version(name, version))


def test_a_fetched_version_is_claimed_before_the_lock_is_released(tmp_path):
    """Finding 4: another alias's server pruned a version between its download and its alias record
    (written after the lock was released): that server never became ready."""
    uri = registry_with(tmp_path / "registry", tiny_reg=tiny_versions.regressor())
    cache, state = tmp_path / "cache", TrustedState(tmp_path / "state")
    folder, _ = cache_module.fetch_verified(
        cache, state, "tiny_reg", "champion", trusted_version(uri, "tiny_reg", "1"), uri
    )
    deleted = cache_module.prune(cache, "tiny_reg", keep=set())  # the other server keeps nothing of ours
    assert deleted == [] and folder.is_dir()


def test_a_failed_load_is_asked_for_again(tmp_path):
    """Finding 4: the server's failed load (the version deleted under it) was never retried."""
    uri = registry_with(tmp_path / "registry", tiny_reg=tiny_versions.regressor())
    watcher = Watcher(uri, ["tiny_reg"], tmp_path / "cache")
    try:
        first = watcher.wait(is_event("ready", "tiny_reg", "1"))
        shutil.rmtree(first["path"])
        watcher.send({"retry": "tiny_reg"})
        watcher.wait(is_event("registry_error", "tiny_reg"))
        again = [e for e in watcher.events if e["event"] == "ready"]
        again = watcher.wait(lambda e: is_event("ready", "tiny_reg", "1")(e) and e is not first)
    finally:
        watcher.stop()
    assert Path(again["path"]).is_dir() and file_manifest(Path(again["path"])) == first["manifest"]


def test_a_version_the_server_never_manages_to_load_is_rejected_not_retried_for_ever(tmp_path):
    """Review of issue 19: a load failing every time was fetched and announced again every
    interval, for ever."""
    uri = registry_with(tmp_path / "registry", tiny_reg=tiny_versions.regressor())
    watcher = Watcher(uri, ["tiny_reg"], tmp_path / "cache")

    def readies(n: int):
        return lambda e: e["event"] == "ready" and sum(x["event"] == "ready" for x in watcher.events) >= n

    def failure(n: int):
        return lambda e: e["event"] == "registry_error" and f"failure {n}" in e["reason"]

    try:
        for n in (1, 2):
            watcher.wait(readies(n))
            watcher.send({"retry": "tiny_reg"})
            assert watcher.wait(failure(n))["retry_in"] == pytest.approx(0.2 * 2**n)
        watcher.wait(readies(3))
        watcher.send({"retry": "tiny_reg"})
        rejected = watcher.wait(is_event("rejected", "tiny_reg", "1"))
    finally:
        watcher.stop()
    assert rejected["reason"] == "the server failed to load it 3 times"


# ---- deadlines: the lock, the download, the bytes written -----------------------------------------


def test_a_held_cache_lock_stalls_one_model_visibly_and_never_the_others(tmp_path):
    """Finding 3: one lock held 40 s stopped alias-following for every model, silently."""
    uri = registry_with(
        tmp_path / "registry", tiny_a=tiny_versions.regressor(), tiny_b=tiny_versions.regressor()
    )
    cache = tmp_path / "cache"
    (cache / "tiny_a").mkdir(parents=True)
    with open(cache / "tiny_a" / ".lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        watcher = Watcher(uri, ["tiny_a", "tiny_b"], cache, "--lock-timeout", "1")
        try:
            watcher.wait(is_event("ready", "tiny_b", "1"))
            error = watcher.wait(is_event("registry_error", "tiny_a"))
            frozen = "cache lock of 'tiny_a' was held by another process with no sign of progress"
            assert frozen in error["reason"]
            beat = watcher.wait(lambda e: e["event"] == "heartbeat" and "tiny_a" in e["stalled"])
            assert "cache lock" in beat["stalled"]["tiny_a"] and "tiny_b" not in beat["stalled"]
            fcntl.flock(held, fcntl.LOCK_UN)
            watcher.wait(is_event("ready", "tiny_a", "1"))
            watcher.wait(lambda e: e["event"] == "heartbeat" and e["stalled"] == {} and e is not beat)
        finally:
            watcher.stop()


def test_a_download_past_its_deadline_is_stopped_and_leaves_nothing(tmp_path):
    """Finding 3: downloads had no overall deadline."""
    uri = registry_with(tmp_path / "registry", tiny_reg=tiny_versions.regressor())
    dest = tmp_path / "cache" / "v1"
    with pytest.raises(Stalled, match="did not finish within"):
        download(trusted_version(uri, "tiny_reg", "1"), dest, uri, 2 << 30, deadline_s=0.001)
    assert not dest.exists() and list(dest.parent.iterdir()) == []
    assert download(trusted_version(uri, "tiny_reg", "1"), dest, uri, 2 << 30).is_dir()


def test_the_bytes_written_are_held_to_the_cap_not_the_listing(tmp_path):
    """Finding 8: the cap was checked against the store's listing; a file swapped for a larger one
    after the listing was written whole before the refusal. Here the listing is passed by (a cap
    the listing would meet) and the write itself stops one byte past the cap."""
    from serving.registry.fetch import _fetch_in_child

    uri = registry_with(tmp_path / "registry", tiny_reg=tiny_versions.regressor())
    trusted = trusted_version(uri, "tiny_reg", "1")
    folder = tmp_path / "partial"
    folder.mkdir()
    caps = {"model.onnx": 2 << 30, "onnxship.json": 100, "benchmark.json": 100}
    with pytest.raises(RejectedModel, match=r"onnxship\.json as downloaded is larger than its size cap"):
        _fetch_in_child(trusted, folder, uri, caps, 60)
    assert (folder / "onnxship.json").stat().st_size == 101  # stopped at the cap, not written whole


# ---- the probe's budgets ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "graph, budget, reason",
    [
        (
            lambda: tiny_versions.slow(2000),
            ["--max-call-s", "0.05"],
            r"one call takes \d\.\d\d s, over the budget of 0.05 s",
        ),
        (lambda: tiny_versions.hungry(), [], r"one call takes \d+ MiB of memory, over the budget of 512 MiB"),
    ],
    ids=["slow", "hungry"],
)
def test_a_model_over_its_per_call_budget_is_refused_by_the_probe(tmp_path, graph, budget, reason):
    """Findings 5 and 6: a valid model taking ~1.5 s a call, and a 320-byte model allocating 1.2 GB
    a call, passed the probe and were served."""
    uri = registry_with(tmp_path / "registry", tiny_costly=graph())
    watcher = Watcher(uri, ["tiny_costly"], tmp_path / "cache", *budget)
    try:
        rejected = watcher.wait(is_event("rejected", "tiny_costly", "1"), seconds=90)
    finally:
        watcher.stop()
    assert rejected["reason"].startswith("probe failed (exit 1): ValueError: ")
    import re

    assert re.search(reason, rejected["reason"]), rejected["reason"]


def test_a_busy_lock_holder_is_waited_for_and_a_frozen_one_is_a_stall(tmp_path):
    """Review of issue 19: a second worker waiting on a first worker's long download reported a
    stall after `lock_timeout_s` although the download was progressing. The holder now marks its
    lock as alive; only a lock nobody marks for `lock_timeout_s` is a stall."""
    import threading
    import time

    model_dir = tmp_path / "cache" / "tiny_reg"
    released = threading.Event()

    def busy_holder() -> None:
        with cache_module.model_lock(model_dir):
            time.sleep(2.5)  # longer than the waiter's timeout below, marking the lock meanwhile
        released.set()

    holder = threading.Thread(target=busy_holder)
    holder.start()
    time.sleep(0.2)
    with cache_module.model_lock(model_dir, timeout_s=1.0):
        assert released.is_set()
    holder.join()
    with open(model_dir / ".lock", "a") as frozen:  # holds the lock and never marks it
        fcntl.flock(frozen, fcntl.LOCK_EX)
        stalled = pytest.raises(Stalled, match="no sign of progress for over 1 s")
        with stalled, cache_module.model_lock(model_dir, timeout_s=1.0):
            pass


@pytest.mark.parametrize("swap", ["symlink to /dev/zero", "fifo", "oversized"])
def test_the_server_reads_only_plain_files_within_their_caps(tmp_path, swap):
    """Review of issue 19: a cache writer could swap model.onnx for a symlink to /dev/zero (memory
    exhausted), or a FIFO (the loader blocked for ever, following stopped while ready)."""
    from onnxship.version import files as verify_module

    folder = tiny_versions.write_version(tmp_path / "v1", tiny_versions.regressor(), "regression")
    manifest = file_manifest(folder)
    target = folder / "onnxship.json"
    target.unlink()
    if swap == "symlink to /dev/zero":
        target.symlink_to("/dev/zero")
        match = "cannot be opened as a plain file"
    elif swap == "fifo":
        os.mkfifo(target)
        match = "not a regular file"
    else:
        target.write_bytes(b" " * (verify_module.JSON_CAP + 1))
        match = "not a regular file within its"
    with pytest.raises(TamperedCopy, match=match):
        load_verified("tiny_reg", "1", folder, manifest, warmup_calls=1, max_threads=1)
