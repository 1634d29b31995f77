"""Every error vortex-jupyter raises, with a stable ``VE-xxx`` code.

The tree::

    VortexError (VE-000)
     ├── ValidationError (VE-100)        a graph has problems; ``.problems`` lists all of them
     ├── FormatError (VE-200)            a file or dict is not a graph we can read
     ├── NodeDefinitionError (VE-300)    a @node function or ComfyUI class is malformed
     │    └── UnknownNodeTypeError (VE-301)
     ├── HashError (VE-400)              a param value cannot be hashed into a cache key
     ├── ExecutionError (VE-500)         a node failed while running (``.node``, ``.traceback``)
     │    ├── NodeTimeoutError (VE-501)
     │    ├── WorkerCrashedError (VE-502)
     │    ├── NodeOutOfMemoryError (VE-503)
     │    ├── RunCancelledError (VE-504)
     │    ├── UpstreamFailedError (VE-505)
     │    └── SandboxViolation (VE-506)     the worker sandbox blocked what a node tried
     ├── ProtocolError (VE-600)          a malformed frame on a kernel<->worker or canvas channel
     ├── PathError (VE-700)              a file path escapes its root or is otherwise unsafe
     ├── ModelError (VE-800)             a checkpoint is missing, corrupt or unsafe
     │    └── ModelNotFoundError (VE-800)  the model file is in no models folder
     ├── PackError (VE-900)              a node pack is malformed, missing or failed to load
     │    └── PackRejected (VE-910)      a node pack's scan found HIGH/CRITICAL findings
     └── RequestError (VE-1000)          a bad request to ``vortex serve`` (VE-1001 malformed,
                                         VE-1002 too large, VE-1003 no token, VE-1004 not found)

Validation problems carry their own codes (``PROBLEM_CODES``). Every message names the
node, port or field, the offending value, and what to do about it. A node's own check
(``NodeSpec.check``, ComfyUI's ``VALIDATE_INPUTS``) reports VE-116; one that answers with a
``MissingFile`` (an input image or a model file that is not there) reports VE-117, and one that
answers with an ``UnsafeFileName`` (a file name that could leave its folder) keeps
``PathError``'s VE-700, at validation as when the node runs.

>>> str(MissingFile("image 'a.png' not found", "copy it into the input folder"))
"image 'a.png' not found"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "PROBLEM_CODES",
    "ExecutionError",
    "FormatError",
    "HashError",
    "MissingFile",
    "ModelError",
    "ModelNotFoundError",
    "NodeDefinitionError",
    "NodeOutOfMemoryError",
    "NodeTimeoutError",
    "PackError",
    "PackRejected",
    "PathError",
    "Problem",
    "ProtocolError",
    "RequestError",
    "RunCancelledError",
    "SandboxViolation",
    "UnknownNodeTypeError",
    "UnsafeFileName",
    "UpstreamFailedError",
    "ValidationError",
    "VortexError",
    "WorkerCrashedError",
]

#: Codes of the problems graph validation reports (see ``vortex_jupyter.graph.validate``).
PROBLEM_CODES: dict[str, str] = {
    "VE-101": "unknown node type",
    "VE-102": "missing required input",
    "VE-103": "port type mismatch",
    "VE-104": "param has the wrong type",
    "VE-105": "param out of range",
    "VE-106": "param is NaN or infinite",
    "VE-107": "edge from a node that does not exist",
    "VE-108": "edge from an output index the node does not have",
    "VE-109": "two edges into one input",
    "VE-110": "self-loop",
    "VE-111": "cycle",
    "VE-112": "unknown input or param name",
    "VE-113": "value is not one of the choices",
    "VE-114": "value too large (string length or integer size)",
    "VE-115": "input fed by a muted node, or by a bypassed node with nothing to pass through",
    "VE-116": "unsupported combination of settings",
    "VE-117": "a file the node reads is missing (an input image, a model file)",
}


class MissingFile(str):
    """A node check's answer for a file that is not there: a ``str``, as ComfyUI's
    ``VALIDATE_INPUTS`` answers, that validation reports as VE-117 with ``hint`` as the fix
    (any other answer is VE-116, an unsupported setting)."""

    code = "VE-117"
    hint: str

    def __new__(cls, message: str, hint: str = "") -> MissingFile:
        text = super().__new__(cls, message)
        text.hint = hint
        return text


class UnsafeFileName(MissingFile):
    """A node check's answer for a file name that could leave its folder (``../x.png``, an
    absolute path, a symlink below the root): validation reports it as VE-700, ``PathError``'s
    code, with ``hint`` as the fix. A ``MissingFile`` only so that every check that passes on
    a missing file's own code and fix passes this one's too; no file is read either way."""

    code = "VE-700"


class VortexError(Exception):
    """Base of every vortex-jupyter error. ``code`` is stable across releases."""

    code = "VE-000"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message)

    def __str__(self) -> str:
        text = f"[{self.code}] {self.message}"
        if self.hint:
            text += f"\n  fix: {self.hint}"
        return text


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a graph. ``node``/``port`` locate it; ``hint`` says how to fix it."""

    code: str
    node: str | None
    port: str | None
    message: str
    hint: str = ""

    def __str__(self) -> str:
        where = self.node if self.node is not None else "graph"
        if self.port:
            where += f".{self.port}"
        text = f"{self.code} {where}: {self.message}"
        return f"{text} (fix: {self.hint})" if self.hint else text

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "node": self.node,
            "port": self.port,
            "message": self.message,
            "hint": self.hint,
        }


class ValidationError(VortexError):
    """A graph has one or more problems; all of them are in ``problems``."""

    code = "VE-100"

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        lines = [f"graph has {count} problem{'s' if count != 1 else ''}:"]
        lines += [f"  - {p}" for p in self.problems[:50]]
        if count > 50:
            lines.append(f"  ... and {count - 50} more")
        super().__init__("\n".join(lines))


class FormatError(VortexError):
    """Input is not a graph in any format we read (malformed JSON, unknown fields, ...)."""

    code = "VE-200"


class NodeDefinitionError(VortexError):
    """A node definition (``@vx.node`` function or ComfyUI-style class) is malformed."""

    code = "VE-300"


class UnknownNodeTypeError(NodeDefinitionError):
    """A node type name is not registered."""

    code = "VE-301"


class HashError(VortexError):
    """A value cannot be turned into a deterministic cache key."""

    code = "VE-400"


class ExecutionError(VortexError):
    """A node failed while running. ``traceback`` is the (worker's) formatted traceback."""

    code = "VE-500"

    def __init__(
        self,
        message: str,
        *,
        node: str | None = None,
        node_type: str | None = None,
        traceback: str | None = None,
        error_type: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.node = node
        self.node_type = node_type
        self.traceback = traceback
        self.error_type = error_type
        super().__init__(message, hint=hint)

    def __str__(self) -> str:
        text = super().__str__()
        if self.traceback:
            text += "\n" + self.traceback.rstrip()
        return text


class NodeTimeoutError(ExecutionError):
    code = "VE-501"


class WorkerCrashedError(ExecutionError):
    code = "VE-502"


class NodeOutOfMemoryError(ExecutionError):
    code = "VE-503"


class RunCancelledError(ExecutionError):
    code = "VE-504"


class UpstreamFailedError(ExecutionError):
    code = "VE-505"


class SandboxViolation(ExecutionError):
    """A node in a sandboxed worker tried something its sandbox forbids (a file outside its
    folders, the network, a program, another process); the message names the action and the
    fix the setting or pack permission that would allow it (``workers/sandbox.py``)."""

    code = "VE-506"


class ProtocolError(VortexError):
    """A frame on a kernel<->worker or canvas channel is malformed, oversized or unexpected."""

    code = "VE-600"


class PathError(VortexError):
    """A path is unsafe: absolute, contains ``..`` or a backslash, or leaves its root via a link."""

    code = "VE-700"


class ModelError(VortexError):
    """A model or checkpoint is missing, corrupt, or in an unsafe format."""

    code = "VE-800"


class ModelNotFoundError(ModelError):
    """A model file named by a loader is in none of the model folders (validation: VE-117)."""


class PackError(VortexError):
    """A node pack is malformed, missing, or failed to load (names the file and field)."""

    code = "VE-900"


class RequestError(VortexError):
    """A request to ``vortex serve`` is malformed, too large, unauthorised or names nothing
    (``status``: the HTTP status it is answered with)."""

    code = "VE-1000"
    status = 400

    def __init__(self, message: str, *, code: str | None = None, status: int = 400, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        if code is not None:
            self.code = code
        self.status = status


class PackRejected(PackError):
    """A node pack's scan (``vortex_jupyter.packages.scan``) found HIGH or CRITICAL findings that
    no ``--allow RULE`` accepts. ``pack`` names it; ``rules`` are the blocking rule ids."""

    code = "VE-910"

    def __init__(
        self, message: str, *, pack: str = "", rules: tuple[str, ...] = (), hint: str | None = None
    ) -> None:
        self.pack = pack
        self.rules = rules
        super().__init__(message, hint=hint)


#: Every exception class by code, for re-raising errors that crossed a process boundary.
ERROR_CLASSES: dict[str, type[VortexError]] = {
    cls.code: cls
    for cls in (
        VortexError,
        ValidationError,
        FormatError,
        NodeDefinitionError,
        UnknownNodeTypeError,
        HashError,
        ExecutionError,
        NodeTimeoutError,
        WorkerCrashedError,
        NodeOutOfMemoryError,
        RunCancelledError,
        UpstreamFailedError,
        SandboxViolation,
        ProtocolError,
        PathError,
        ModelError,
        PackRejected,
    )
}
