"""The layout holds: stages/ has only the scripts dvc.yaml runs, each thin; dvc.yaml lists every
file a stage can import; the core never imports stages or serving; serving never imports stages;
the server process loads no MLflow, pandas, training framework or pickle loader."""

from __future__ import annotations

import ast

import pytest
import yaml

from onnxship.pipeline.dvc_files import all_stages, dvc_files
from tests.conftest import ROOT, modules_loaded_by
from tools.stage_deps import (
    CODE_DIR,
    CODE_STAGE,
    TOOL_STAGES,
    closure,
    dep_errors,
    digest_text,
    stage_closures,
)
from tools.stage_params import PARAMS_DIR, PER_MODEL, write_params_files

MAX_STAGE_LINES = 100


def test_each_stage_depends_on_the_code_it_can_import():
    assert dep_errors() == {}, "each stage's deps name reports/code/<stage>.txt (python -m tools.stage_deps)"
    # the committed code files are what stage `code` writes from this tree: dvc.lock matches them
    for name, files in stage_closures().items():
        assert (ROOT / CODE_DIR / f"{name}.txt").read_text() == digest_text(files), (
            f"{CODE_DIR}/{name}.txt is stale: run `dvc repro code` (or make run)"
        )


def pipeline_copy(tmp_path) -> dict[str, dict]:
    """The pipeline's DVC files (dvc.yaml, pipeline/<stage>/dvc.yaml) parsed, by path under the
    project, to break one and write them all under tmp_path (write_pipeline)."""
    return {str(f.relative_to(ROOT)): yaml.safe_load(f.read_text()) for f in dvc_files(ROOT)}


def write_pipeline(files: dict[str, dict], root) -> None:
    for relative, body in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(yaml.safe_dump(body))


def test_a_missing_code_file_or_a_stray_code_path_is_named(tmp_path):
    files = pipeline_copy(tmp_path)
    files["dvc.yaml"]["stages"]["prepare"]["deps"] = ["onnxship/data/tables.py"]
    files["dvc.yaml"]["stages"][CODE_STAGE]["deps"] = ["stages"]
    write_pipeline(files, tmp_path)
    errors = dep_errors(tmp_path)
    assert errors["prepare"] == "needs reports/code/prepare.txt in its deps"
    assert "onnxship/runtime.py" in errors[CODE_STAGE]


def test_a_missing_params_file_or_a_stray_params_list_is_named(tmp_path):
    files = pipeline_copy(tmp_path)
    benchmark = files["pipeline/benchmark/dvc.yaml"]["stages"]["benchmark"]["do"]
    benchmark["deps"] = [d for d in benchmark["deps"] if not d.startswith(str(PARAMS_DIR))]
    files["pipeline/train/dvc.yaml"]["stages"]["train"]["do"]["params"] = ["seed"]
    write_pipeline(files, tmp_path)
    errors = dep_errors(tmp_path)
    assert errors["benchmark"] == "needs reports/params/benchmark/${key}.yaml in its deps"
    assert errors["train"].startswith("lists params: reports/params/train/${key}.yaml covers them")


def test_a_stage_defined_in_two_pipeline_files_is_refused(tmp_path):
    files = pipeline_copy(tmp_path)
    files["dvc.yaml"]["stages"]["train"] = files["pipeline/train/dvc.yaml"]["stages"]["train"]
    write_pipeline(files, tmp_path)
    with pytest.raises(ValueError, match="stage 'train' is defined twice"):
        all_stages(tmp_path)


def test_each_per_model_stage_has_its_own_file_and_lock():
    """One pipeline/<stage>/dvc.yaml per per-model stage, its commands and paths from the project's
    root, and a committed lock beside each: DVC rewrites only the lock of the stage it ran."""
    for stage in PER_MODEL:
        path = ROOT / "pipeline" / stage / "dvc.yaml"
        assert list(yaml.safe_load(path.read_text())["stages"]) == [stage], path
        assert yaml.safe_load(path.read_text())["stages"][stage]["do"]["wdir"] == "../.."
        assert (path.parent / "dvc.lock").exists(), f"{path.parent}/dvc.lock is not committed"
    assert not set(PER_MODEL) & set(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])


def test_the_committed_params_files_are_what_stage_params_writes(tmp_path):
    """dvc.lock records them: a stale one would make DVC decide from old values."""
    written = write_params_files(tmp_path / "params", ROOT / "params.yaml")
    committed = sorted((ROOT / PARAMS_DIR).rglob("*.yaml"))
    assert [p.relative_to(tmp_path / "params") for p in written] == [
        p.relative_to(ROOT / PARAMS_DIR) for p in committed
    ]
    for fresh in written:
        relative = fresh.relative_to(tmp_path / "params")
        assert (ROOT / PARAMS_DIR / relative).read_text() == fresh.read_text(), (
            f"{PARAMS_DIR}/{relative} is stale: run `dvc repro params` (or make run)"
        )
    # a model's file holds its own zoo entry and no other model's
    train_xgboost = yaml.safe_load((tmp_path / "params" / "train" / "xgboost.yaml").read_text())
    assert set(train_xgboost) == {"zoo.models.xgboost", "seed"}


def test_a_params_edit_reaches_exactly_the_stages_that_read_it(tmp_path):
    """One model's training parameter changes that model's files (and the stacks that train
    their own copy of it), never another model's or a stage that does not read the zoo."""
    before = write_params_files(tmp_path / "before", ROOT / "params.yaml")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["zoo"]["models"]["xgboost"]["params"]["max_depth"] += 1
    stacks = [name for name, spec in params["zoo"]["models"].items() if spec["family"] == "stacking"]
    assert stacks, "the default zoo has a stack that trains its own copy of xgboost"
    for stack in stacks:  # conf/zoo interpolates the bases' entries
        params["zoo"]["models"][stack]["base"]["xgboost"]["params"]["max_depth"] += 1
    edited = tmp_path / "params.yaml"
    edited.write_text(yaml.safe_dump(params))
    after = write_params_files(tmp_path / "after", edited)
    changed = {
        str(a.relative_to(tmp_path / "after"))
        for b, a in zip(before, after, strict=True)
        if b.read_text() != a.read_text()
    }
    per_model = {
        f"{stage}/{model}.yaml"
        for stage in ("train", "optimize", "validate", "benchmark")
        for model in ("xgboost", *stacks)
    }
    assert changed == per_model | {"summarize.yaml"}


def test_the_closure_follows_function_level_imports_and_plugin_packages():
    files = {str(p) for p in closure(ROOT / "stages" / "validate.py")}
    assert "onnxship/parity/rows.py" in files and "onnxship/parity/hostile.py" in files
    assert {str(p.relative_to(ROOT)) for p in (ROOT / "onnxship" / "families").glob("*.py")} <= files
    assert "onnxship/packaging/build.py" not in files  # only package uses it


def test_stages_holds_only_thin_dvc_stage_scripts():
    stages = set(all_stages(ROOT)) - set(TOOL_STAGES)
    scripts = {p.stem for p in (ROOT / "stages").glob("*.py") if p.stem not in ("__init__", "__main__")}
    assert scripts == stages
    for name in scripts:
        lines = len((ROOT / "stages" / f"{name}.py").read_text().splitlines())
        assert lines <= MAX_STAGE_LINES, f"stages/{name}.py has {lines} lines: move library code to onnxship/"


def imports_of(package: str) -> set[str]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
    return found


def test_imports_point_one_way():
    assert not {"stages", "serving", "tools"} & imports_of("onnxship")
    assert "stages" not in imports_of("serving")
    assert "tools" not in imports_of("serving")


def test_the_server_process_imports_no_heavy_or_unsafe_module():
    modules = sorted(
        modules_loaded_by(
            "from serving.http.app import create_app\n"
            "import serving.http.serve, serving.http.follower\n"
            "create_app()"
        )
    )
    loaded = {m.split(".")[0] for m in modules}
    forbidden = {"mlflow", "pandas", "torch", "xgboost", "lightgbm", "catboost", "sklearn", "joblib"}
    forbidden |= {"cloudpickle", "dill", "hydra", "onnxmltools", "skl2onnx", "chronos"}
    assert not forbidden & loaded, forbidden & loaded
    core = {m for m in modules if m.startswith("onnxship")}
    allowed = {"onnxship", "onnxship.contract", "onnxship.io", "onnxship.runtime", "onnxship.store"}
    allowed |= {"onnxship.version", "onnxship.version.schema", "onnxship.version.files"}
    # forecasting as the library's predict does it, in NumPy (no torch, no chronos)
    allowed |= {f"onnxship.forecasting.{m}" for m in ("categorical", "quantiles", "rollout", "tasks")}
    allowed |= {"onnxship.forecasting"}
    # shadow mode judges a candidate as validate judges a variant (NumPy comparisons)
    allowed |= {"onnxship.parity", "onnxship.parity.rows", "onnxship.parity.forecasts", "onnxship.scoring"}
    assert core <= allowed, core
    assert not [n for n in ast.parse((ROOT / "onnxship" / "__init__.py").read_text()).body[1:]]


def onnxship_imports(path) -> set[str]:
    """The onnxship modules a file imports, at any depth of the file (function-level included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("onnxship"):
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("onnxship")}
    return found


def module_name(path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_the_library_never_reaches_up_into_the_stage_machinery():
    # onnxship/pipeline/ is how a stage runs (Hydra config, MLflow, the runner): the folders it
    # runs take what they need as arguments, so they stay usable from the bench CLI and tests
    outside = [p for p in (ROOT / "onnxship").rglob("*.py") if "pipeline" not in p.relative_to(ROOT).parts]
    reaching = {
        str(p.relative_to(ROOT))
        for p in outside
        if any(m.startswith("onnxship.pipeline") for m in onnxship_imports(p))
    }
    assert not reaching, reaching


def test_the_library_has_no_import_circle():
    """No onnxship module imports, at any depth, one that imports it back (the rows-vs-series split
    once had data.py and series.py importing each other)."""
    modules = {module_name(p): p for p in (ROOT / "onnxship").rglob("*.py")}
    edges = {
        name: {m for m in onnxship_imports(path) if m in modules} - {name} for name, path in modules.items()
    }
    done, stack = set(), []

    def visit(name: str) -> None:
        if name in stack:
            raise AssertionError("import circle: " + " -> ".join([*stack[stack.index(name) :], name]))
        if name in done:
            return
        stack.append(name)
        for other in edges[name]:
            visit(other)
        stack.pop()
        done.add(name)

    for name in modules:
        visit(name)


def test_test_modules_never_import_each_other():
    """What several test modules need lives in helper modules (tests/builders.py, tests/served.py,
    ...): a test module imported by another runs its module-scoped fixtures twice and hides who
    owns what."""
    importing = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "tests").glob("test_*.py")
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tests.test_")
    }
    assert not importing, importing


def test_the_committed_lock_holds_only_the_pipelines_stages(tmp_path):
    """DVC keeps a removed stage's entry and rewrites the whole lock around every stage it runs."""
    from tools.prune_lock import stale_entries, stale_stages

    assert stale_entries() == {}, "run `python -m tools.prune_lock` and commit the locks"
    train = ROOT / "pipeline" / "train"
    lock = yaml.safe_load((train / "dvc.lock").read_text())
    name = next(iter(lock["stages"]))
    lock["stages"]["train@a_model_left_the_zoo"] = lock["stages"][name]
    stale = tmp_path / "dvc.lock"
    stale.write_text(yaml.safe_dump(lock))
    assert stale_stages(stale, train / "dvc.yaml") == ["train@a_model_left_the_zoo"]
