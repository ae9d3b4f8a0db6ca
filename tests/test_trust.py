"""What the registry vouches for, over a real MLflow registry (SQLite + local artifact store) with
tiny versions: each attack from issue 10 by someone who can write to the artifact store but not
to the registry database, refused by `promote` and by the watcher with the reason; and the
watcher's following (per-model backoff, one bad model never stopping the others, several
watchers sharing one cache, pruning). Seconds, no pipeline."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from onnxship.version.manifest import GATES_TAG, MANIFEST_TAG
from serving.registry.promote import PromotionRefused, check_version
from tests import tiny_versions
from tests.registry_helpers import register_folder
from tests.services import free_port
from tests.watching import Watcher, alias, is_event

CAP = 2 << 30


@pytest.fixture(scope="module")
def uri(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('registry') / 'mlflow.db'}"


def fresh(tmp_path: Path, kind: str = "regression") -> Path:
    graph = tiny_versions.regressor() if kind == "regression" else tiny_versions.classifier()
    folder = tmp_path / f"{kind}-{time.monotonic_ns()}"
    return tiny_versions.write_version(folder, graph, kind)


def edit_metadata(change):
    def edit(folder: Path) -> None:
        meta = json.loads((folder / "onnxship.json").read_text())
        change(meta)
        (folder / "onnxship.json").write_text(json.dumps(meta))

    return edit


def check(uri: str, name: str, version: str, cap: int = CAP) -> dict:
    mv = MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version(name, version)
    return check_version(mv, uri, cap)


def test_a_version_packaged_as_the_pipeline_does_passes(uri, tmp_path):
    version = register_folder(uri, "tiny_reg", fresh(tmp_path))
    assert check(uri, "tiny_reg", version)["features"] == tiny_versions.FEATURES


def reverse_features(folder: Path) -> None:
    edit_metadata(lambda m: m.update(features=m["features"][::-1]))(folder)


def replace_model_and_metadata(folder: Path) -> None:
    """A different graph with metadata that matches it: consistent, but not what was packaged."""
    graph = tiny_versions.regressor()
    graph.graph.initializer[0].float_data[:] = []
    tiny_versions.write_version(folder, graph, "regression")


def directory_benchmark(folder: Path) -> None:
    (folder / "benchmark.json").unlink()
    (folder / "benchmark.json").mkdir()
    for i in range(3):
        (folder / "benchmark.json" / f"part{i}").write_bytes(b"x" * 1000)


def drop(*keys):
    return lambda tags: {k: v for k, v in tags.items() if k not in keys}


def with_tag(key, value):
    return lambda tags: {**tags, key: value}


ATTACKS = {
    # 1. onnxship.json and benchmark.json are pinned like model.onnx
    "reversed features": (dict(after_tagging=reverse_features), r"sha256 of onnxship\.json"),
    "benchmark edited": (
        dict(after_tagging=lambda f: (f / "benchmark.json").write_text("{}")),
        r"sha256 of benchmark\.json",
    ),
    # 2. no tag, no serve: replacing model and metadata together no longer passes
    "model and metadata replaced, no sha tag": (
        dict(after_tagging=replace_model_and_metadata, retag=drop("onnx_sha256")),
        "onnx_sha256 tag and the onnxship_manifest tag disagree",
    ),
    "model and metadata replaced, no manifest": (
        dict(after_tagging=replace_model_and_metadata, retag=drop(MANIFEST_TAG)),
        "registry records no onnxship_manifest tag",
    ),
    "manifest nested 2400 deep": (
        dict(retag=with_tag(MANIFEST_TAG, "[" * 2400 + "]" * 2400)),
        "not valid JSON",
    ),
    "manifest is a list": (dict(retag=with_tag(MANIFEST_TAG, "[1, 2]")), "not an object"),
    "number where a hash belongs": (
        dict(retag=with_tag(MANIFEST_TAG, '{"model.onnx": 5, "onnxship.json": 6}')),
        "is not a sha256",
    ),
    "manifest names a path": (
        dict(retag=with_tag(MANIFEST_TAG, json.dumps({"../model.onnx": "0" * 64}))),
        "not a plain name",
    ),
    # 4. gates live in the registry; the run that logged the files is the one that packaged them
    "gate failed": (
        dict(retag=with_tag(GATES_TAG, '{"export": true, "parity": false, "benchmark": true}')),
        "gate.s. failed at packaging: parity",
    ),
    "no gates tag": (dict(retag=drop(GATES_TAG)), "no onnxship_gates tag"),
    # parity and benchmark never ran: a version must record every gate, not only pass those it has
    "only the export gate": (
        dict(retag=with_tag(GATES_TAG, '{"export": true}')),
        r"gate\(s\) never recorded at packaging: parity, benchmark",
    ),
    "parity verdict missing": (dict(retag=drop("parity_verdict")), "parity_verdict tag is not 'pass'"),
    "another run's files": (dict(retag=with_tag("package_run_id", "0" * 32)), "run and its package_run_id"),
    # 8. a folder where a file belongs is refused before it is fetched
    "benchmark.json is a folder": (dict(after_tagging=directory_benchmark), r"benchmark\.json is a folder"),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_what_the_registry_does_not_vouch_for_is_refused(uri, tmp_path, attack):
    how, reason = ATTACKS[attack]
    version = register_folder(uri, "tiny_reg", fresh(tmp_path), **how)
    with pytest.raises(PromotionRefused, match=reason):
        check(uri, "tiny_reg", version)


BAD_METADATA = {
    # 1. a packager (or a registry writer) that wrote nonsense is refused by the schema
    "3000 threads": (
        lambda m: m["inference_settings"].update(intra_op_threads=3000),
        "intra_op_threads: Input should be less than or equal to 256",
    ),
    "nested features": (
        lambda m: m.update(features=[[1], [2], [3]]),
        "features.0: Input should be a valid string",
    ),
    "features short of the input": (
        lambda m: m.update(features=["a", "b"]),
        r"metadata says \[2\] \(2 features\)",
    ),
    "classes short of the output": (
        lambda m: m.update(classes=["low", "high"]),
        "2 classes, the graph gives",
    ),
    "duplicate features": (lambda m: m.update(features=["a", "a", "c"]), "names must be unique"),
    "forecaster without a forecast block": (lambda m: m.update(task="forecast"), "needs its forecast block"),
    "unknown provider name": (
        lambda m: m["inference_settings"].update(providers=["../../lib"]),
        "providers.0: String should match pattern",
    ),
}


@pytest.mark.parametrize("case", list(BAD_METADATA))
def test_metadata_outside_its_schema_is_refused_even_when_vouched_for(uri, tmp_path, case):
    change, reason = BAD_METADATA[case]
    folder = fresh(tmp_path, "classification")
    edit_metadata(change)(folder)
    version = register_folder(uri, "tiny_clf", folder)
    with pytest.raises(PromotionRefused, match=reason):
        check(uri, "tiny_clf", version)


def test_a_model_over_the_size_cap_is_refused_before_download(uri, tmp_path):
    version = register_folder(uri, "tiny_reg", fresh(tmp_path))
    with pytest.raises(PromotionRefused, match=r"model\.onnx is \d+ bytes, over the 100 cap"):
        check(uri, "tiny_reg", version, cap=100)


# ---- the watcher process ----------------------------------------------------------------------


def test_one_bad_model_never_stops_the_others(uri, tmp_path):
    """Finding 5: a version whose tags raise RecursionError, one whose files vanished from the store,
    and a model with no alias, listed before a sound model: each is answered for and the sound
    model is served."""
    nested = register_folder(uri, "bad_nested", fresh(tmp_path), retag=with_tag(MANIFEST_TAG, "[" * 5000))
    alias(uri, "bad_nested", nested)
    gone = register_folder(uri, "bad_gone", fresh(tmp_path))
    alias(uri, "bad_gone", gone)
    source = MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version("bad_gone", gone).source
    shutil.rmtree(Path(source.removeprefix("file://")))
    good = register_folder(uri, "good", fresh(tmp_path))
    alias(uri, "good", good)
    watcher = Watcher(uri, ["bad_nested", "bad_gone", "no_alias", "good"], tmp_path / "cache")
    try:
        assert "not valid JSON" in watcher.wait(is_event("rejected", "bad_nested"))["reason"]
        watcher.wait(is_event("missing", "no_alias"))
        watcher.wait(is_event("ready", "good", good))
        gone_event = watcher.wait(lambda e: e.get("model") == "bad_gone" and e["event"] != "heartbeat")
        assert gone_event["event"] in ("rejected", "registry_error"), gone_event
        watcher.wait(is_event("heartbeat"))
        assert watcher.proc.poll() is None
    finally:
        watcher.stop()


def test_downloads_fork_from_the_watcher_itself_not_from_an_interpreter_importing_mlflow_again(uri, tmp_path):
    """The download forkserver is a fork of the watcher taken once MLflow is imported: a watcher
    start costs one MLflow import, not two (serving/registry/fetch.py fork_downloader)."""
    import psutil

    good = register_folder(uri, "forked", fresh(tmp_path))
    alias(uri, "forked", good)
    watcher = Watcher(uri, ["forked"], tmp_path / "cache")
    try:
        watcher.wait(is_event("ready", "forked", good))  # downloaded through the forkserver
        children = psutil.Process(watcher.proc.pid).children()
        commands = [child.cmdline() for child in children]
        assert not [c for c in commands if any("forkserver" in part for part in c)], commands
        assert watcher.proc.args in commands  # the forkserver: the watcher's own command, forked
        (forked,) = [child for child in children if child.cmdline() == watcher.proc.args]
        watcher.proc.kill()  # a watcher killed outright takes its forkserver (and any download) along
        psutil.wait_procs([forked], timeout=10)
        assert not forked.is_running() or forked.status() == psutil.STATUS_ZOMBIE
    finally:
        watcher.stop()


def test_an_unreachable_registry_is_retried_with_backoff_per_model(tmp_path):
    watcher = Watcher(
        f"http://127.0.0.1:{free_port()}", ["a", "b"], tmp_path / "cache", "--max-backoff", "0.8"
    )

    def errors(model: str) -> list[dict]:
        return [e for e in watcher.events if is_event("registry_error", model)(e)]

    try:
        watcher.wait(lambda _: len(errors("a")) >= 5 and len(errors("b")) >= 5, seconds=30)
    finally:
        watcher.stop()
    assert [e["retry_in"] for e in errors("a")[:5]] == [0.2, 0.4, 0.8, 0.8, 0.8]


def test_watchers_of_several_workers_share_one_cache_safely(uri, tmp_path):
    """Finding 7: four watchers over one cache directory (as with `serve --workers 4`) used to
    delete each other's partial downloads; now the first downloads, the others reuse it."""
    versions = {}
    for name in ("shared_a", "shared_b"):
        versions[name] = register_folder(uri, name, fresh(tmp_path))
        alias(uri, name, versions[name])
    cache = tmp_path / "cache"
    watchers = [Watcher(uri, list(versions), cache) for _ in range(4)]
    try:
        for watcher in watchers:
            for name, version in versions.items():
                watcher.wait(is_event("ready", name, version))
        problems = [e for w in watchers for e in w.events if e["event"] in ("rejected", "registry_error")]
        assert problems == []
    finally:
        for watcher in watchers:
            watcher.stop()
    state = cache.parent / "cache.state"  # the watcher's default: beside the cache, never in it
    assert state.stat().st_mode & 0o777 == 0o700
    for name, version in versions.items():
        assert sorted(p.name for p in (cache / name).iterdir()) == [".lock", "champion.json", f"v{version}"]
        private = sorted(p.name for p in (state / name).iterdir())
        assert private == ["champion.json", f"v{version}.probed"]
        assert all((state / name / p).stat().st_mode & 0o777 == 0o600 for p in private)


def test_the_cache_keeps_the_served_and_previous_versions_only(uri, tmp_path):
    """Finding 8: every version ever fetched (rejected ones too) stayed in the cache."""
    cache = tmp_path / "cache"
    first = register_folder(uri, "pruned", fresh(tmp_path))
    alias(uri, "pruned", first)
    watcher = Watcher(uri, ["pruned"], cache)
    try:
        watcher.wait(is_event("ready", "pruned", first))
        served = [first]
        for _ in range(3):
            version = register_folder(uri, "pruned", fresh(tmp_path))
            alias(uri, "pruned", version)
            watcher.wait(is_event("ready", "pruned", version))
            served.append(version)
        bad = register_folder(uri, "pruned", fresh(tmp_path), after_tagging=reverse_features)
        alias(uri, "pruned", bad)
        watcher.wait(is_event("rejected", "pruned", bad))
    finally:
        watcher.stop()
    kept = sorted(p.name for p in (cache / "pruned").iterdir() if p.is_dir())
    assert kept == sorted(f"v{v}" for v in served[-2:])


def test_a_version_that_failed_a_gate_is_still_vouched_for_as_a_record_but_never_approved(uri, tmp_path):
    """onnxship-bench re-times such a version (`approved=False`); serving never serves it."""
    from onnxship.version.verify import RejectedModel, vouched

    failed = '{"export": true, "parity": true, "benchmark": false}'
    version = register_folder(uri, "tiny_reg", fresh(tmp_path), retag=with_tag(GATES_TAG, failed))
    mv = MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version("tiny_reg", version)
    with pytest.raises(RejectedModel, match=r"gate\(s\) failed at packaging: benchmark"):
        vouched(mv)
    trusted = vouched(mv, approved=False)
    assert trusted.gates["benchmark"] is False and trusted.version == str(version)
    # what is not a matter of approval is still refused
    bad = register_folder(uri, "tiny_reg", fresh(tmp_path), retag=with_tag("package_run_id", "0" * 32))
    mv = MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version("tiny_reg", bad)
    with pytest.raises(RejectedModel, match="run and its package_run_id"):
        vouched(mv, approved=False)


@pytest.mark.parametrize("version", ["1/../../../evil", "../1", "v1", "", "1 ", "\u0661"])
def test_a_version_that_is_not_a_number_never_names_a_folder(version):
    """A cache record's version becomes a folder name (v<version>): only MLflow's numbers pass."""
    from onnxship.version.verify import RejectedModel, Vouched

    manifest = {"model.onnx": "0" * 64, "onnxship.json": "1" * 64}
    record = {"version": version, "source": "s", "manifest": manifest, "gates": {"export": True}}
    with pytest.raises(RejectedModel, match="not a version number"):
        Vouched.from_record(record)
    assert Vouched.from_record(record | {"version": "12"}).version == "12"
