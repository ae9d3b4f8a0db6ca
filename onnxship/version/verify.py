"""What the registry vouches for, and the check of a downloaded version against it: the pure part
of fetching a registered version, shared by the server's watcher (serving/registry/fetch.py) and
`onnxship-bench --registered`, so both refuse the same versions for the same reasons.

A version is vouched for when its registry record (tags) holds a well-formed manifest and gates,
every gate passed, and the model's sha256 tag and run agree with them; a downloaded folder passes
when every file is in the manifest with the same sha256, the metadata fits its schema and agrees
with the registry, and the graph has no external data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onnxship.contract import BENCHMARK_FILE, METADATA_FILE, MODEL_FILE
from onnxship.io import sha256_file
from onnxship.version.manifest import (
    GATES,
    GATES_TAG,
    MANIFEST_TAG,
    ONNX_SHA_TAG,
    RUN_TAG,
    SHA256,
    ManifestError,
    parse_gates,
    parse_manifest,
)
from onnxship.version.schema import MAX_METADATA_BYTES, MetadataRejected, parse_metadata

SERVED_FILES = (MODEL_FILE, METADATA_FILE)  # required
OPTIONAL_FILES = (BENCHMARK_FILE,)  # fetched when the manifest lists it
MAX_JSON_BYTES = MAX_METADATA_BYTES


class RejectedModel(Exception):
    """A registered version that must not be served; the message says why."""


@dataclass(frozen=True)
class Vouched:
    """What the registry database says about a version: the only thing trusted as it is."""

    version: str
    source: str
    manifest: dict[str, str]
    gates: dict[str, bool]

    def __post_init__(self) -> None:
        # a version names a cache folder (v<version>): MLflow's are positive integers, nothing else
        if not (isinstance(self.version, str) and self.version.isascii() and self.version.isdigit()):
            raise RejectedModel("the version is not a version number")

    @property
    def files(self) -> list[str]:
        return [*SERVED_FILES, *(f for f in OPTIONAL_FILES if f in self.manifest)]

    @property
    def served_manifest(self) -> dict[str, str]:
        """sha256 of each file serving reads: what a process loading them checks them against."""
        return {f: self.manifest[f] for f in self.files}

    def to_record(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "source": self.source,
            "manifest": self.manifest,
            "gates": self.gates,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Vouched:
        return cls(
            str(record["version"]),
            str(record["source"]),
            parse_manifest(json.dumps(record["manifest"])),
            parse_gates(json.dumps(record["gates"])),
        )


def vouched(mv: Any, approved: bool = True) -> Vouched:
    """Check a registry version's own record (no download): manifest and gates tags present and
    well formed, the model's sha256 tag agrees with the manifest, the version was registered from
    the run that packaged it, and (`approved`, what serving requires) every gate passed.
    `onnxship-bench` re-times versions that failed a gate too: it asks only for the record."""
    tags = dict(mv.tags or {})
    try:
        manifest = parse_manifest(tags.get(MANIFEST_TAG))
        gates = parse_gates(tags.get(GATES_TAG))
    except ManifestError as err:
        raise RejectedModel(f"{err}: refusing a version the registry does not vouch for") from None
    missing = [f for f in SERVED_FILES if f not in manifest]
    if missing:
        raise RejectedModel(f"the {MANIFEST_TAG} tag does not list {', '.join(missing)}")
    unrecorded = [g for g in GATES if g not in gates]
    if approved and unrecorded:
        raise RejectedModel(f"gate(s) never recorded at packaging: {', '.join(unrecorded)}")
    failed = sorted(g for g, ok in gates.items() if not ok)
    if approved and failed:
        raise RejectedModel(f"gate(s) failed at packaging: {', '.join(failed)}")
    if approved and tags.get("parity_verdict") != "pass":
        raise RejectedModel("the parity_verdict tag is not 'pass'")
    onnx_sha = tags.get(ONNX_SHA_TAG)
    if not isinstance(onnx_sha, str) or not SHA256.fullmatch(onnx_sha) or onnx_sha != manifest[MODEL_FILE]:
        raise RejectedModel(f"the {ONNX_SHA_TAG} tag and the {MANIFEST_TAG} tag disagree on model.onnx")
    if not mv.run_id or tags.get(RUN_TAG) != mv.run_id:
        raise RejectedModel(f"the version's run and its {RUN_TAG} tag differ")
    return Vouched(str(mv.version), str(mv.source), manifest, gates)


def verify(folder: Path, trusted: Vouched) -> dict[str, Any]:
    """Every file in the folder is in the manifest with the same sha256; the metadata fits its
    schema and agrees with the registry; the graph has no external data. Returns the metadata."""
    for name in trusted.files:
        path = folder / name
        if path.is_symlink() or not path.is_file():
            raise RejectedModel(f"{name} is missing or a symlink")
    unexpected = sorted(p.name for p in folder.iterdir() if p.name not in trusted.manifest)
    if unexpected:
        raise RejectedModel(f"{len(unexpected)} file(s) in the version folder are not in the manifest")
    for name in trusted.files:
        actual = sha256_file(folder / name)
        if actual != trusted.manifest[name]:
            raise RejectedModel(
                f"sha256 of {name} is {actual[:12]}…, "
                f"the registry's manifest records {trusted.manifest[name][:12]}…"
            )
    try:
        metadata = parse_metadata((folder / METADATA_FILE).read_bytes())
    except MetadataRejected as err:
        raise RejectedModel(str(err)) from None
    if metadata["sha256"] != trusted.manifest[MODEL_FILE]:
        raise RejectedModel("onnxship.json's sha256 and the registry's manifest disagree on model.onnx")
    if metadata["gates"] != trusted.gates:
        raise RejectedModel(f"onnxship.json's gates and the registry's {GATES_TAG} tag differ")
    if BENCHMARK_FILE in trusted.manifest:
        try:
            json.loads((folder / BENCHMARK_FILE).read_bytes())
        except (ValueError, RecursionError):
            raise RejectedModel(f"{BENCHMARK_FILE} is not valid JSON") from None
    check_external_data(folder / MODEL_FILE)
    return metadata


def check_external_data(model_path: Path) -> None:
    """Packaged models are single files: any tensor anywhere (initializers, sparse initializers,
    node attributes, If/Loop/Scan subgraphs, functions) that points at external data is refused."""
    import onnx

    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as err:  # protobuf raises several types for garbage bytes
        raise RejectedModel(f"model.onnx does not parse as ONNX: {type(err).__name__}") from err
    for where, tensor in external_tensors(model):
        location = {e.key: e.value for e in tensor.external_data}.get("location", "?")
        raise RejectedModel(
            f"{where} points at external data '{location[:100]}'; served models must be self-contained"
        )


def external_tensors(model: Any):
    """(where, tensor) for every tensor in the model whose data lives outside the file."""
    import onnx

    def tensors_of_attribute(attr):
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        for sparse in ([attr.sparse_tensor] if attr.HasField("sparse_tensor") else []) + list(
            attr.sparse_tensors
        ):
            yield sparse.values
            yield sparse.indices

    def walk_nodes(nodes, where):
        for node in nodes:
            for attr in node.attribute:
                for tensor in tensors_of_attribute(attr):
                    yield f"{where}: attribute '{attr.name}' of a {node.op_type} node", tensor
                for graph in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    yield from walk_graph(graph, f"{where}: subgraph of a {node.op_type} node")

    def walk_graph(graph, where):
        for tensor in graph.initializer:
            yield f"{where}: initializer", tensor
        for sparse in graph.sparse_initializer:
            yield f"{where}: sparse initializer", sparse.values
            yield f"{where}: sparse initializer", sparse.indices
        yield from walk_nodes(graph.node, where)

    candidates = list(walk_graph(model.graph, "graph"))
    for function in model.functions:
        candidates += walk_nodes(function.node, f"function '{function.name[:50]}'")
    return [(w, t) for w, t in candidates if t.data_location == onnx.TensorProto.EXTERNAL or t.external_data]
