"""One-file bundles (fast tier): round trip, pins, refusals, damage, truncation and hostile archives."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from edge_agent.bundle import (
    INFO,
    _digest,
    install_bundle,
    installed_packs,
    pack_model,
    read_bundle_info,
    resolve_pack,
    write_bundle,
)
from edge_agent.cli import main
from edge_agent.errors import ModelError, PackError
from edge_agent.files import sha256_file
from edge_agent.gguf import write_gguf
from edge_agent.models import add_model
from edge_agent.pack import load_pack

TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"


def tiny_gguf(path: Path, salt: int = 0) -> Path:
    meta: dict[str, object] = {"general.architecture": "llama", "general.name": f"tiny{salt}",
                               "llama.context_length": 512, "tokenizer.chat_template": TEMPLATE}
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_gguf(path, meta, [("tok_embd.weight", (64, 8 + salt), 3), ("norm.weight", (8,), 0)])


@pytest.fixture
def builder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The building machine's home, with a small registered student 'tiny'."""
    home = tmp_path / "builder-home"
    monkeypatch.setenv("EDGE_AGENT_HOME", str(home))
    add_model(tiny_gguf(tmp_path / "models" / "tiny.gguf"), "tiny")
    return home


def device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Switch to a second, empty home: the device."""
    home = tmp_path / "device-home"
    monkeypatch.setenv("EDGE_AGENT_HOME", str(home))
    return home


def tree(root: Path) -> dict[str, str]:
    if not root.exists():
        return {}
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def test_round_trip_with_the_model(builder: Path, hash_pack: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "desk.eapack"
    report = write_bundle(hash_pack, out, name="desk", model="tiny", include_model=True)
    assert report.files == len(load_pack(hash_pack).manifest["files"]) + 2  # + manifest.json + the GGUF
    info = read_bundle_info(out)
    assert info["model"]["name"] == "tiny" and info["model"]["file"] == "model/tiny.gguf"
    assert info["model"]["sha256"] == sha256_file(tmp_path / "models" / "tiny.gguf")
    assert info["model"]["size"] == (tmp_path / "models" / "tiny.gguf").stat().st_size

    home = device(tmp_path, monkeypatch)
    done = install_bundle(out)
    assert done.path == home / "packs" / "desk" and not done.replaced
    assert done.model_path is not None and done.model_path.parent == home / "models"
    assert sha256_file(done.model_path) == info["model"]["sha256"]
    loaded = load_pack(done.path)
    assert [s.id for s in loaded.strategies] == [s.id for s in load_pack(hash_pack).strategies]
    assert installed_packs() == ["desk"]
    assert resolve_pack("desk") == done.path
    assert pack_model(done.path) == done.model  # the installed GGUF, registered on the device
    assert pack_model(done.path, "mock") == "mock"  # an explicit --model wins
    # nothing left behind but the pack, its record and the model
    assert sorted(p.name for p in (home / "packs").iterdir()) == ["desk"]


def test_bundles_are_byte_identical(builder: Path, hash_pack: Path, tmp_path: Path) -> None:
    a = write_bundle(hash_pack, tmp_path / "a.eapack", name="desk", model="tiny").path
    b = write_bundle(hash_pack, tmp_path / "b.eapack", name="desk", model="tiny").path
    assert sha256_file(a) == sha256_file(b)


def test_cli_bundle_install_and_chat_by_name(builder: Path, hash_pack: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "desk.eapack"
    main(["pack", "bundle", str(hash_pack), "--out", str(out), "--name", "desk", "--model", "tiny", "--json"])
    made = json.loads(capsys.readouterr().out)
    assert made["name"] == "desk" and made["model"]["file"] is None  # pinned only
    device(tmp_path, monkeypatch)
    main(["pack", "install", str(out), "--json"])
    assert json.loads(capsys.readouterr().out)["name"] == "desk"
    main(["pack", "list"])
    assert capsys.readouterr().out.split() == ["desk"]
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"my internet is down since yesterday\n")))
    main(["chat", "--pack", "desk", "--model", "mock", "--json"])
    turn = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert turn["text"].startswith("Thanks for reaching out") and turn["strategies"]
    main(["retrieve", "my internet is down", "--pack", "desk", "--json"])
    assert json.loads(capsys.readouterr().out)["hits"]
    main(["pack", "verify", "desk"])
    assert capsys.readouterr().out.startswith("OK ")
    main(["pack", "inspect", "desk", "--json"])
    assert json.loads(capsys.readouterr().out)["format"] == "edge-agent-pack"


def test_existing_pack_is_kept_without_force(builder: Path, hash_pack: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = write_bundle(hash_pack, tmp_path / "desk.eapack", name="desk", model="tiny").path
    home = device(tmp_path, monkeypatch)
    install_bundle(out)
    marker = home / "packs" / "desk" / "notes.txt"
    marker.write_text("the operator's own file")
    before = tree(home)
    with pytest.raises(SystemExit) as exit_info:
        main(["pack", "install", str(out)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already installed" in err and "--force" in err
    assert tree(home) == before
    again = install_bundle(out, force=True)
    assert again.replaced and not marker.exists() and load_pack(again.path)
    assert install_bundle(out, name="desk2").path == home / "packs" / "desk2"  # beside it, under another name
    stranger = home / "packs" / "notes"
    stranger.mkdir()
    (stranger / "todo.txt").write_text("not a pack")
    with pytest.raises(PackError, match="is not a pack, so it is left alone even with --force"):
        install_bundle(out, name="notes", force=True)
    assert (stranger / "todo.txt").read_text() == "not a pack"


def test_out_file_is_not_overwritten_without_force(builder: Path, hash_pack: Path, tmp_path: Path) -> None:
    out = tmp_path / "desk.eapack"
    out.write_bytes(b"someone's file")
    with pytest.raises(PackError, match="already exists; pass --force"):
        write_bundle(hash_pack, out, model="tiny")
    assert out.read_bytes() == b"someone's file"
    write_bundle(hash_pack, out, model="tiny", force=True)
    assert read_bundle_info(out)["name"] == "pack"


def _offset_of(bundle: Path, member: str) -> int:
    with tarfile.open(bundle) as tar:
        return tar.getmember(member).offset_data


def test_damaged_byte_is_caught_before_anything_is_written(builder: Path, hash_pack: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    out = write_bundle(hash_pack, tmp_path / "desk.eapack", name="desk", model="tiny", include_model=True).path
    data = bytearray(out.read_bytes())
    data[_offset_of(out, "model/tiny.gguf") + 700] ^= 0x40
    bad = tmp_path / "bad.eapack"
    bad.write_bytes(bytes(data))
    home = device(tmp_path, monkeypatch)
    with pytest.raises(PackError) as err:
        install_bundle(bad)
    message = str(err.value)
    assert "sha256 of model/tiny.gguf" in message and "copy the file again" in message and "\n" not in message
    assert tree(home) == {}


@pytest.mark.parametrize("cut", ["half", "after-info", "last-byte", "first-block"])
def test_truncated_bundle_is_one_line_and_writes_nothing(builder: Path, hash_pack: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch, cut: str) -> None:
    out = write_bundle(hash_pack, tmp_path / "desk.eapack", name="desk", model="tiny", include_model=True).path
    data = out.read_bytes()
    with tarfile.open(out) as tar:
        second = tar.getmembers()[1].offset  # the header after bundle.json: a cut on a block boundary
    size = {"half": len(data) // 2, "after-info": second, "last-byte": len(data) - 10241, "first-block": 300}[cut]
    short = tmp_path / "short.eapack"
    short.write_bytes(data[:size])
    home = device(tmp_path, monkeypatch)
    with pytest.raises(PackError) as err:
        install_bundle(short)
    message = str(err.value)
    assert "\n" not in message and ("truncated" in message or "damaged" in message or "not a readable" in message)
    assert "edge-agent pack bundle" in message
    assert tree(home) == {}


def test_edited_description_fails_its_digest(builder: Path, hash_pack: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    out = write_bundle(hash_pack, tmp_path / "desk.eapack", name="desk", model="tiny").path
    data = out.read_bytes()
    edited = data.replace(b'"name": "desk"', b'"name": "dusk"', 1)
    assert edited != data
    bad = tmp_path / "edited.eapack"
    bad.write_bytes(edited)
    device(tmp_path, monkeypatch)
    with pytest.raises(PackError, match="does not match its own digest"):
        install_bundle(bad)


def hostile(path: Path, members: list[tuple[tarfile.TarInfo, bytes]], listed: dict[str, bytes]) -> Path:
    """An archive with a valid bundle.json listing `listed` (name -> content) and the given members."""
    import hashlib

    info = {"format": "edge-agent-bundle", "format_version": 1, "name": "evil",
            "model": {"name": "tiny", "sha256": "0" * 64, "size": 1, "file": None},
            "files": {n: {"sha256": hashlib.sha256(b).hexdigest(), "bytes": len(b)} for n, b in listed.items()},
            "created_by": {}}
    info["digest"] = _digest(info)
    raw = json.dumps(info).encode()
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        head = tarfile.TarInfo(INFO)
        head.size = len(raw)
        tar.addfile(head, io.BytesIO(raw))
        for member, content in members:
            tar.addfile(member, io.BytesIO(content) if member.isreg() else None)
    return path


def _file(name: str, content: bytes) -> tuple[tarfile.TarInfo, bytes]:
    member = tarfile.TarInfo(name)
    member.size = len(content)
    return member, content


@pytest.mark.parametrize("case", ["dotdot-listed", "absolute-listed", "unlisted-dotdot", "symlink", "hardlink",
                                  "duplicate", "outside-folders"])
def test_hostile_archives_are_refused(tmp_path: Path, case: str) -> None:
    evil = b"x"
    manifest = ("pack/manifest.json", b"{}")
    if case == "dotdot-listed":
        listed, members = {manifest[0]: manifest[1], "pack/../../escape.txt": evil}, [_file("pack/../../escape.txt", evil)]
    elif case == "absolute-listed":
        listed, members = {manifest[0]: manifest[1], "/tmp/escape.txt": evil}, [_file("/tmp/escape.txt", evil)]
    elif case == "unlisted-dotdot":
        listed, members = {manifest[0]: manifest[1]}, [_file("../escape.txt", evil), _file(*manifest)]
    elif case in ("symlink", "hardlink"):
        link = tarfile.TarInfo("pack/manifest.json")
        link.type = tarfile.SYMTYPE if case == "symlink" else tarfile.LNKTYPE
        link.linkname = "/etc/passwd"
        listed, members = {manifest[0]: manifest[1]}, [(link, b"")]
    elif case == "duplicate":
        listed, members = {manifest[0]: manifest[1]}, [_file(*manifest), _file(*manifest)]
    else:
        listed, members = {manifest[0]: manifest[1], "other/x": evil}, [_file(*manifest), _file("other/x", evil)]
    bundle = hostile(tmp_path / "evil.eapack", members, listed)
    home = Path(os.environ["EDGE_AGENT_HOME"])
    with pytest.raises(PackError) as err:
        install_bundle(bundle)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "escape.txt").exists() and not Path("/tmp/escape.txt").exists()
    assert tree(home) == {}


def test_pinned_model_must_match_on_the_device(builder: Path, hash_pack: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    out = write_bundle(hash_pack, tmp_path / "desk.eapack", name="desk", model="tiny").path
    device(tmp_path, monkeypatch)
    pack = install_bundle(out).path
    with pytest.raises(ModelError, match="not installed here; bundle it with --include-model"):
        pack_model(pack)
    add_model(tiny_gguf(tmp_path / "other" / "tiny.gguf", salt=1), "tiny")  # same name, other weights
    with pytest.raises(ModelError, match="install the same model version"):
        pack_model(pack)
    add_model(tiny_gguf(tmp_path / "same" / "tiny.gguf"), "my-copy")  # the very same content, another name
    assert pack_model(pack) == "my-copy"


def test_builtin_pin_without_its_package_finds_a_registered_copy(hash_pack: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 student_path: Path) -> None:
    out = write_bundle(hash_pack, tmp_path / "desk.eapack", name="desk").path  # pins the default student
    pack = install_bundle(out).path
    assert pack_model(pack) == read_bundle_info(out)["model"]["name"]  # its package is installed here
    monkeypatch.setattr("edge_agent.models.package_installed", lambda name: False)  # a device without it
    with pytest.raises(ModelError, match="not installed here"):
        pack_model(pack)
    add_model(student_path, "local-student")  # the GGUF copied over and registered
    assert pack_model(pack) == "local-student"


def test_unknown_pack_name_lists_the_installed_ones(builder: Path, hash_pack: Path, tmp_path: Path) -> None:
    install_bundle(write_bundle(hash_pack, tmp_path / "desk.eapack", name="desk", model="tiny").path)
    with pytest.raises(PackError, match=r"no installed pack of that name \(installed: desk\)"):
        resolve_pack("dsek")
    assert resolve_pack(hash_pack) == hash_pack  # a directory is used as it is


def test_bad_name_and_missing_file(builder: Path, hash_pack: Path, tmp_path: Path) -> None:
    with pytest.raises(PackError, match="invalid bundle name"):
        write_bundle(hash_pack, tmp_path / "x.eapack", name="Desk Pack", model="tiny")
    with pytest.raises(PackError, match="does not exist; pass the .eapack file"):
        install_bundle(tmp_path / "nothing.eapack")
    gz = tmp_path / "x.eapack"
    write_bundle(hash_pack, gz, model="tiny")
    import gzip

    gz.write_bytes(gzip.compress(gz.read_bytes()))
    with pytest.raises(PackError, match="not a readable bundle"):
        install_bundle(gz)
