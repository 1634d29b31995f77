"""Node code reaches the workers as the kernel sees it: its import path and its file names."""

from __future__ import annotations

import subprocess
import sys
import types

from vortex_jupyter.workers.codefiles import DYNAMIC, code_files, restore_files

MODULE = '''
import vortex_jupyter as vx


def _check(x):
    if x < 0:
        raise ValueError(f"negative: {x}")
    return x


@vx.node(category="test")
def shiptriple(x: int = 1) -> int:
    return 3 * _check(x)


class ShipHalve:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"x": ("INT", {"default": 2})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "go"

    def go(self, x):
        return (x // 2,)


vx.registry.register_comfy_mappings({"ShipHalve": ShipHalve})
'''

SCRIPT = '''
import vortex_jupyter as vx
from vortex_jupyter.workers.executor import WorkerExecutor
import shipnodes

ex = WorkerExecutor(preload=("numpy",), late_preload=())
g = vx.Graph()
a = g.add("shiptriple", x=5)
b = g.add("ShipHalve", x=a.out(0))
r = g.run(executor=ex)
print("OK", r.stats["ran"], r.outputs[b.id][0], sorted(r.errors))
a.params["x"] = -1
r = g.run(executor=ex)
print("TB", r.errors[a.id].traceback)
ex.close()
'''


def test_a_node_module_next_to_the_script_imports_in_the_worker_from_any_cwd(tmp_path):
    src, elsewhere = tmp_path / "proj", tmp_path / "elsewhere"
    src.mkdir()
    elsewhere.mkdir()
    (src / "shipnodes.py").write_text(MODULE)
    (src / "main.py").write_text(SCRIPT)
    out = subprocess.run([sys.executable, str(src / "main.py")], cwd=elsewhere, capture_output=True,
                         text=True, timeout=120)
    lines = out.stdout.splitlines()
    assert lines and lines[0] == "OK 2 7 []", out.stdout + out.stderr
    tb = out.stdout.split("TB", 1)[1]
    assert f'File "{src / "shipnodes.py"}", line 7, in _check' in tb, tb
    assert "in shiptriple" in tb and 'raise ValueError(f"negative: {x}")' in tb


def _dynamic(fn: types.FunctionType) -> types.FunctionType:
    """``fn`` as cloudpickle >= 3.1 rebuilds it by value: its code says "<dynamic-code>"."""
    def strip(code: types.CodeType) -> types.CodeType:
        consts = tuple(strip(c) if isinstance(c, types.CodeType) else c for c in code.co_consts)
        return code.replace(co_filename=DYNAMIC, co_consts=consts)

    return types.FunctionType(strip(fn.__code__), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)


def _outer(x):
    def inner(y):
        return y + 1
    return inner(x)


def test_by_value_functions_get_their_file_names_back():
    files = code_files(_outer)
    line = _outer.__code__.co_firstlineno
    assert files == {f"_outer:{line}": __file__, f"_outer.<locals>.inner:{line + 1}": __file__}
    shipped = _dynamic(_outer)
    assert shipped.__code__.co_filename == DYNAMIC
    restore_files(shipped, files)
    inner = next(c for c in shipped.__code__.co_consts if isinstance(c, types.CodeType))
    assert shipped.__code__.co_filename == inner.co_filename == __file__
    assert shipped(1) == 2


def test_methods_of_classes_held_by_a_callable_are_found():
    class Node:
        def go(self):
            return 1

    class Call:
        def __init__(self) -> None:
            self.cls = Node

    files = code_files(Call())
    assert any(k.endswith("Node.go:" + str(Node.go.__code__.co_firstlineno)) for k in files)
    shipped = _dynamic(Node.go)
    restore_files(shipped, files)
    assert shipped.__code__.co_filename == __file__
