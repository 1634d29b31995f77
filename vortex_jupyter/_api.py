"""The Python API: ``Graph``, ``Node``, ``Run`` and ``load``.

>>> import vortex_jupyter as vx
>>> @vx.node(category="math")
... def add(a: int, b: int = 0) -> int:
...     return a + b
>>> g = vx.Graph()
>>> x = g.add("add", a=1, b=2)
>>> y = g.add("add", a=x.out(0), b=5)
>>> g.run(executor="inline").outputs[y.id]
(8,)

A ``Graph`` is a thin handle over a ``GraphModel`` (the data) and an ``Engine`` (keys, plan,
cache). Everything that edits the graph goes through the model, so the canvas and the engine
see every change. ``Run`` wraps what one run did; its outputs stay in the executor's cache and
are fetched when read.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .engine.events import Event
from .engine.executor import CancelToken, Executor
from .engine.executors import get_executor
from .engine.executors import register as register_executor
from .engine.run import Engine
from .engine.state import Run, RunState
from .errors import FormatError, Problem, ValidationError, VortexError
from .graph.model import GraphModel

if TYPE_CHECKING:
    from .nodes.spec import NodeSpec

__all__ = ["Graph", "Node", "OutputRef", "Run", "load"]

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _registry() -> Any:
    from .nodes.registry import REGISTRY

    return REGISTRY


def _worker_executor() -> Executor:
    """The worker pool's executor, made on first use (the engine does not import workers)."""
    from .workers.executor import WorkerExecutor, shared_pool

    return WorkerExecutor(shared_pool())


register_executor("workers", _worker_executor)


def _ray_executor() -> Executor:
    """Nodes in Ray actors (the optional ``ray`` extra; Ray is imported only now)."""
    from .workers.ray_executor import RayExecutor

    return RayExecutor()


register_executor("ray", _ray_executor)


_MODE_NAMES = {0: "always", 1: "on event", 2: "muted", 3: "on trigger", 4: "bypassed"}
_MODE_CODES = {name: code for code, name in _MODE_NAMES.items()} | {"never": 2, "mute": 2, "bypass": 4}


class OutputRef(NamedTuple):
    """Output number ``output`` of node ``node``: pass it as an input of ``Graph.add`` to link."""

    node: str
    output: int

    def __repr__(self) -> str:
        return f"<output {self.output} of node {self.node!r}>"


class Params(MutableMapping[str, Any]):
    """A node's params; writes go through the model (so caches and the canvas follow).

    Assigning an ``OutputRef`` (or a ``Node``) links the input instead of setting a value.
    """

    def __init__(self, graph: Graph, node_id: str) -> None:
        self._graph = graph
        self._id = node_id

    def _params(self) -> dict[str, Any]:
        return self._graph.model.nodes[self._id].params

    def __getitem__(self, name: str) -> Any:
        return self._params()[name]

    def __setitem__(self, name: str, value: Any) -> None:
        ref = self._graph._as_ref(value)
        if ref is not None:
            self._graph.model.connect(ref.node, ref.output, self._id, name)
        else:
            self._graph.model.set_param(self._id, name, value)

    def __delitem__(self, name: str) -> None:
        if name not in self._params():
            raise KeyError(name)
        self._graph.model.delete_param(self._id, name)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._params()))

    def __len__(self) -> int:
        return len(self._params())

    def __repr__(self) -> str:
        return repr(self._params())


class Node:
    """A handle on one node of a ``Graph`` (cheap; created on demand)."""

    __slots__ = ("_graph", "id")

    def __init__(self, graph: Graph, node_id: str) -> None:
        self._graph = graph
        self.id = node_id

    @property
    def _data(self) -> Any:
        return self._graph.model.nodes[self.id]

    @property
    def type(self) -> str:
        return str(self._data.type)

    @property
    def spec(self) -> NodeSpec:
        return _registry().get(self.type)  # type: ignore[no-any-return]

    @property
    def params(self) -> Params:
        return Params(self._graph, self.id)

    @params.setter
    def params(self, values: Mapping[str, Any]) -> None:
        params = self.params
        for k, v in values.items():
            params[k] = v

    @property
    def pos(self) -> tuple[float, float]:
        return self._data.pos  # type: ignore[no-any-return]

    @pos.setter
    def pos(self, value: tuple[float, float]) -> None:
        from .graph.formats._common import pair  # what a saved file can hold, it must load again

        self._graph.model.set_layout(self.id, pos=pair(value, f"node {self.id!r} pos"))

    @property
    def title(self) -> str | None:
        return self._data.title  # type: ignore[no-any-return]

    @title.setter
    def title(self, value: str | None) -> None:
        from .graph.formats._common import opt_title

        self._graph.model.set_layout(self.id, title=opt_title(value, f"node {self.id!r} title") or "")

    @property
    def mode(self) -> str:
        """ComfyUI's node mode: "always" (runs), "muted" (does not run; its consumers get
        VE-115) or "bypassed" (does not run; its inputs pass through to matching outputs)."""
        return _MODE_NAMES.get(self._graph.model.mode(self.id), "always")

    @mode.setter
    def mode(self, value: str | int) -> None:
        code = _MODE_CODES.get(value) if isinstance(value, str) else value
        if type(code) is not int or code not in (0, 1, 2, 3, 4):
            raise VortexError(f"node {self.id!r}: {value!r} is not a node mode",
                              hint='use "always", "muted" or "bypassed" (or ComfyUI\'s 0, 2, 4)')
        self._graph.model.set_mode(self.id, code)

    @property
    def inputs(self) -> dict[str, OutputRef]:
        """Linked inputs: input name -> the output feeding it."""
        return {name: OutputRef(edges[0].src, edges[0].src_output)
                for name, edges in self._graph.model.inputs_of(self.id).items() if edges}

    def out(self, ref: int | str = 0) -> OutputRef:
        """One of this node's outputs, by index or by name/type (``x.out("INT")``)."""
        return OutputRef(self.id, self.spec.output_index(ref))

    def __getattr__(self, name: str) -> OutputRef:
        # ``ks.LATENT`` reads like the canvas; only upper-case names, so typos in
        # attribute names of the handle itself still raise AttributeError.
        if name.isupper():
            try:
                return self.out(name)
            except (KeyError, IndexError, VortexError):
                pass
        raise AttributeError(f"Node has no attribute {name!r}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Node) and other._graph is self._graph and other.id == self.id

    def __hash__(self) -> int:
        return hash((id(self._graph), self.id))

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in list(self._data.params.items())[:6])
        links = ", ".join(f"{k}<-{r.node}[{r.output}]" for k, r in self.inputs.items())
        inner = ", ".join(x for x in (params, links) if x)
        return f"<Node {self.id!r} {self.type}({inner})>"


class _NodesView(Mapping[str, Node]):
    def __init__(self, graph: Graph) -> None:
        self._graph = graph

    def __getitem__(self, node_id: str) -> Node:
        if node_id not in self._graph.model.nodes:
            raise KeyError(f"no node {node_id!r} in this graph (ids: {_some(self._graph.model.nodes)})")
        return Node(self._graph, node_id)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._graph.model.nodes))

    def __len__(self) -> int:
        return len(self._graph.model.nodes)

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k!r}: {self[k]!r}" for k in list(self)[:20]) + "}"


def _some(ids: Iterable[str], n: int = 10) -> str:
    ids = list(ids)
    return ", ".join(ids[:n]) + (" ..." if len(ids) > n else "")


class Graph:
    """A node graph you edit from Python (and on the canvas) and run incrementally."""

    #: the Y doc binding to use for its canvas (a workflow document's), else one is made
    _vx_doc: Any = None
    #: the workflow document this graph is (``vx.open``), if any
    _vx_document: Any = None

    def __init__(self, model: GraphModel | None = None) -> None:
        self.model = model if model is not None else GraphModel()
        #: Who this graph's work belongs to. Under ``VORTEX_SANDBOX=strict`` graphs of different
        #: owners run in different worker processes with their own memory and cache (None:
        #: this graph alone); otherwise every graph of the kernel shares one pool.
        self.owner: str | None = None
        self._engine: Engine | None = None
        self._listeners: list[Callable[[Event], None]] = []
        self._lock = threading.Lock()
        #: The latest ``Run`` started by ``run()``/``start()`` (a canvas opened later shows it).
        self.last_run: Run | None = None
        #: Where this graph's runs come from, as the history records it ("notebook", "cli", ...).
        self.origin = "notebook"

    # ---- construction ------------------------------------------------------------------
    @classmethod
    def default(cls) -> Graph:
        """txt2img on the built-in tiny model (the package's ``txt2img.json``)."""
        return load(_default_workflow())

    @property
    def engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                from .history.provenance import record

                self._engine = Engine(self.model, _registry().lookup)
                self._engine.provenance = record  # output images record how they were made
            return self._engine

    @property
    def nodes(self) -> Mapping[str, Node]:
        return _NodesView(self)

    def __getitem__(self, node_id: str) -> Node:
        return self.nodes[node_id]

    def __len__(self) -> int:
        return len(self.model)

    def add(self, type: str, /, id: str | None = None, **inputs: Any) -> Node:
        """Add a node of ``type``; keyword args are params, or links when given an output.

        >>> # y = g.add("add", a=x.out(0), b=5)
        """
        spec = _registry().get(type)  # raises UnknownNodeTypeError with close matches
        if id is not None:
            from .graph.formats._common import node_id as checked_id  # one the formats load again

            id = checked_id(id, "id")
        unknown = [k for k in inputs if spec.input(k) is None]
        if unknown:
            raise ValidationError([_unknown_input(spec, id, k, inputs[k]) for k in unknown])
        links = {k: r for k, v in inputs.items() if (r := self._as_ref(v)) is not None}
        params = {k: v for k, v in inputs.items() if k not in links}
        node_id = self.model.add_node(type, params, id=id)
        for name, ref in links.items():
            self.model.connect(ref.node, ref.output, node_id, name)
        return Node(self, node_id)

    def _as_ref(self, value: Any) -> OutputRef | None:
        if isinstance(value, OutputRef):
            return value
        if isinstance(value, Node):
            return value.out(0)
        return None

    def remove(self, node: str | Node) -> None:
        self.model.remove_node(node.id if isinstance(node, Node) else node)

    def connect(self, src: OutputRef | Node, dst: str | Node, input: str) -> None:
        """Link ``src`` (``x.out(i)`` or a node: its output 0) into ``dst.input``."""
        ref = self._as_ref(src)
        if ref is None:
            raise TypeError(f"connect() takes an output (node.out(i)) or a Node as src, not {src!r}")
        self.model.connect(ref.node, ref.output, dst.id if isinstance(dst, Node) else dst, input)

    def disconnect(self, dst: str | Node, input: str) -> None:
        self.model.disconnect(dst.id if isinstance(dst, Node) else dst, input)

    def copy(self) -> Graph:
        """A copy of the graph (it shares the output cache: keys do not depend on ids)."""
        return Graph(self.model.copy())

    # ---- validation and runs -----------------------------------------------------------
    def validate(self) -> None:
        """Raise ``ValidationError`` listing every problem of the graph, if any."""
        problems = self.engine.validate()
        if problems:
            raise ValidationError(problems)

    def problems(self) -> list[Problem]:
        return self.engine.validate()

    def _executor(self, executor: str | Executor | None) -> Executor:
        """``get_executor``, except that a sandbox gives each owner its own worker pool."""
        if (executor is None or isinstance(executor, str)) and os.environ.get("VORTEX_SANDBOX"):
            from .engine.executors import default_executor_name
            from .workers.supervisor import sandbox_mode

            name = (executor or default_executor_name()).strip().lower()
            if name == "workers" and sandbox_mode() == "strict":
                from .workers.executor import owner_executor

                if self.owner is None:
                    self.owner = f"graph-{uuid.uuid4().hex[:12]}"
                return owner_executor(self.owner)
        return get_executor(executor)

    def _run_listeners(self, origin: str | None, history: Any = None) -> list[Callable[[Event], None]]:
        """The graph's listeners, plus the history's recorder (``history/recorder.py``)."""
        from .history.recorder import recorder_for

        recorder = recorder_for(self.model, origin or self.origin, history)
        # the recorder first: when the canvas (or any listener) hears run_finished, the history has it
        listeners = ([recorder] if recorder is not None else []) + list(self._listeners)
        from . import telemetry

        if telemetry.enabled():  # VORTEX_METRICS=1: the same metrics as vortex serve's
            try:
                listeners.append(telemetry.MetricsListener(self.model, origin or self.origin))
            except ImportError:
                warnings.warn("VORTEX_METRICS=1 needs prometheus-client (pip install 'vortex-jupyter[server]')",
                              stacklevel=3)
        return listeners

    def run(self, executor: str | Executor | None = None, outputs: Iterable[str | Node] | None = None,
            node_timeout: float | None = None, *, origin: str | None = None, history: Any = None) -> Run:
        """Run what changed since the last run, block until done, and return the ``Run``.

        ``outputs`` restricts the run to those nodes and what they need. Raises
        ``ValidationError`` before running anything if the graph has problems; node failures
        do not raise (see ``run.errors``). Every run is recorded in the history (``vx.history()``;
        ``history``: another ``History`` file); ``origin`` says where it came from there (default
        ``graph.origin``: "notebook").
        """
        from .telemetry import run_span

        ex = self._executor(executor)
        cancel = CancelToken()
        run_id = _new_run_id()
        with run_span(run_id, origin or self.origin):  # (VORTEX_TRACES: the run's span)
            state = self.engine.run(ex, outputs=_ids(outputs), node_timeout=node_timeout, cancel=cancel,
                                    listeners=self._run_listeners(origin, history), run_id=run_id)
        run = self.last_run = Run(state, cancel)
        return run

    def start(self, executor: str | Executor | None = None, outputs: Iterable[str | Node] | None = None,
              node_timeout: float | None = None, *, origin: str | None = None, history: Any = None) -> Run:
        """Like ``run`` but returns at once; ``run.wait()``, ``run.cancel()``, ``run.done``."""
        ex = self._executor(executor)
        cancel = CancelToken()
        from .engine.cache import cache_for

        state = RunState(_new_run_id(), ex, cache_for(ex))
        listeners = self._run_listeners(origin, history)

        from .telemetry import run_span

        span_origin = origin or self.origin

        def target() -> None:
            try:
                with run_span(state.run_id, span_origin):
                    self.engine.run(ex, outputs=_ids(outputs), node_timeout=node_timeout, cancel=cancel,
                                    listeners=listeners, state=state, run_id=state.run_id)
            except BaseException as exc:  # surfaced by run.wait()
                state.fail(exc)

        thread = threading.Thread(target=target, name=f"vortex-run-{state.run_id}", daemon=True)
        run = self.last_run = Run(state, cancel, thread)
        thread.start()
        return run

    def queue(self, *, priority: int = 0, outputs: Iterable[str | Node] | None = None) -> Any:
        """Queue the graph as it is now (``vx.queue()``: one run at a time, in order, persisted
        in the history file); returns the ``QueueItem`` (``vx.queue().wait(item)``).
        ``outputs``: run only those nodes and what they need, as ``run(outputs=...)``."""
        from .history.queue import queue

        targets = None
        if outputs is not None:
            targets = [o if isinstance(o, str) else o.id for o in outputs]
            missing = [t for t in targets if t not in self.nodes]
            if missing:
                raise VortexError(f"queue(outputs=...): no node {missing[0]!r} in this graph",
                                  hint="pass node ids or nodes of this graph")
        return queue().submit(self, priority=priority, origin=self.origin, targets=targets)

    def on_event(self, fn: Callable[[Event], None]) -> Callable[[Event], None]:
        """Call ``fn(event)`` for every event of every later run (from any thread)."""
        self._listeners.append(fn)
        return fn

    def off_event(self, fn: Callable[[Event], None]) -> None:
        self._listeners.remove(fn)

    # ---- formats -----------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The native JSON document (a dict with ``schema_version``)."""
        from .graph.formats import to_native

        return to_native(self.model)

    def to_comfy_api(self) -> dict[str, Any]:
        from .graph.formats import to_comfy_api

        return to_comfy_api(self.model, _registry().lookup)

    def to_comfy_ui(self) -> dict[str, Any]:
        from .graph.formats import to_comfy_ui

        return to_comfy_ui(self.model, _registry().lookup)

    def save(self, path: str | Path | None = None, format: str = "native") -> Path:
        """Write the graph as JSON: ``format`` is "native", "comfy_api" or "comfy_ui".

        A graph opened with ``vx.open(path)`` saves to its file without a ``path``, in the
        file's own format (through the Jupyter server or the file's open panels when there
        are any)."""
        if path is None:
            doc = self._vx_document
            if doc is None:
                raise VortexError("save() needs a path: this graph was not opened from a file",
                                  hint="g.save('flow.vortex.json'), or open one with vx.open(path)")
            doc.save()
            return Path(doc.key)
        writers = {"native": self.to_json, "comfy_api": self.to_comfy_api, "comfy_ui": self.to_comfy_ui}
        if format not in writers:
            raise ValueError(f"unknown format {format!r}; use one of {', '.join(writers)}")
        path = Path(path)
        path.write_text(json.dumps(writers[format](), indent=1, allow_nan=False))
        return path

    # ---- display -----------------------------------------------------------------------
    def canvas(self) -> Any:
        """The canvas widget for this graph (one per graph, shared by every view)."""
        from .canvas.widget import Canvas

        if getattr(self, "_canvas", None) is None:
            self._canvas = Canvas(self)
        return self._canvas

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """The canvas: JupyterLab's vortex extension renders ``MIME`` (for every user of a
        shared notebook: its renderer is safe); other frontends show the anywidget view."""
        data: dict[str, Any] = {}
        try:
            widget = self.canvas()
            bundle = widget._repr_mimebundle_(include=include, exclude=exclude)
            data = dict(bundle[0] if isinstance(bundle, tuple) else bundle)
        except Exception:  # no widget support: the extension's output or text still shows
            pass
        try:
            from .lab.views import MIME, mime_data

            data[MIME] = mime_data(self)
        except Exception:
            pass
        data["text/plain"] = repr(self)
        return data

    def __repr__(self) -> str:
        n_edges = sum(1 for _ in self.model.edges())
        types: dict[str, int] = {}
        for node in self.model.nodes.values():
            types[node.type] = types.get(node.type, 0) + 1
        summary = ", ".join(f"{t} x{c}" if c > 1 else t for t, c in list(types.items())[:8])
        more = " ..." if len(types) > 8 else ""
        return f"<Graph: {len(self.model)} nodes, {n_edges} edges ({summary}{more})>"


def _ids(outputs: Iterable[str | Node] | None) -> list[str] | None:
    if outputs is None:
        return None
    if isinstance(outputs, (str, Node)):
        outputs = [outputs]
    return [o.id if isinstance(o, Node) else str(o) for o in outputs]


def _new_run_id() -> str:
    import uuid

    return uuid.uuid4().hex[:12]


def _unknown_input(spec: NodeSpec, node: str | None, name: str, value: Any) -> Problem:
    import difflib

    names = [p.name for p in spec.inputs]
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    where = f"node {node!r} ({spec.type})" if node is not None else f"a new {spec.type} node"
    return Problem("VE-112", node, name, f"{where} has no input {name!r} (given {value!r:.60})",
                   f"{hint}inputs of {spec.type}: {', '.join(names) or 'none'}")


def open(path: str | os.PathLike[str], *, timeout: float = 15.0) -> Graph:
    """The graph of a workflow file (``*.vortex.json``, a ComfyUI workflow, a PNG), shared
    with every open canvas of that file: under JupyterLab with real-time collaboration the
    graph joins the file's room (edits go both ways live; the server saves the file);
    otherwise ``g.save()`` writes it back. Opening a file twice in a kernel gives one graph."""
    from .lab.document import open_document

    return open_document(path, timeout=timeout)  # type: ignore[no-any-return]


def load(source: str | Path | Mapping[str, Any] | bytes) -> Graph:
    """A ``Graph`` from a file (``.json`` in any format we read, or a ``.png`` with the
    workflow in its text chunks), a parsed dict, or PNG/JSON bytes. Raises ``FormatError``."""
    from .graph import formats

    lookup = _registry().lookup
    if isinstance(source, Mapping):
        return Graph(formats.load_any(dict(source), lookup))
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    elif not isinstance(source, (str, os.PathLike)):
        raise FormatError(f"cannot load a graph from a {type(source).__name__} ({source!r:.60})",
                          hint="pass a file path, a dict (parsed JSON) or PNG/JSON bytes")
    else:
        path = Path(source)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise FormatError(f"cannot read {str(path)!r}: {exc.strerror or exc}",
                              hint="check the path") from None
    if data.startswith(_PNG_MAGIC):
        return Graph(formats.graph_from_png(data, lookup))
    return Graph(formats.load_any(data, lookup))


def _default_workflow() -> dict[str, Any]:
    """The default txt2img graph: packaged with the diffusion nodes, else the repo example."""
    from importlib import resources

    try:
        text = resources.files("vortex_jupyter.nodes.diffusion").joinpath("txt2img.json").read_text()
    except (FileNotFoundError, ModuleNotFoundError, OSError):
        repo = Path(__file__).resolve().parent.parent / "examples" / "txt2img.json"
        if not repo.is_file():
            raise VortexError(
                "the default txt2img workflow is missing (vortex_jupyter/nodes/diffusion/txt2img.json)",
                hint="reinstall vortex-jupyter, or build a graph with vx.Graph() / vx.load(path)",
            ) from None
        text = repo.read_text()
    return json.loads(text)  # type: ignore[no-any-return]
