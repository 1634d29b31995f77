"""The relay: y-protocols frames between one graph's ``GraphDoc`` and its open views.

State per graph: the views (``view_id -> send``), each view's last awareness frame (so a
view that joins later sees the others' cursors), and a scratch replica of the doc.

Policy for a ``{"t": "y"}`` frame from a view:
- sync step 1: answer with step 2 (what the view lacks);
- sync step 2 / update: UNTRUSTED. Size-capped, applied first to the scratch replica (kept
  equal to the real doc; rebuilt whenever the kernel wrote since, or after a rejection),
  with every ``BaseException`` caught (pycrdt raises pyo3 ``PanicException`` on some
  malformed updates), the touched parts checked against the schema and the limits
  (``limits.py``: the doc's total size, strings, declared params); only then applied to
  the authoritative doc and relayed to every OTHER view (to all with ``echo``). A rejected
  frame costs its sender an ``{"t": "error", "code": "VE-600"}`` message and never reaches
  the graph; one that could be read is also taken back in its sender's replica
  (``_refuse``, ``revert.py``), whose later edits build on it;
- awareness: validated, remembered, relayed to the other views.

>>> from vortex_jupyter.graph.model import GraphModel
>>> from vortex_jupyter.canvas.ydoc import GraphDoc
>>> relay = Relay(GraphDoc(GraphModel(), lookup=None))
>>> sent = []
>>> relay.add_view("v1", lambda msg, bufs: sent.append(msg))
>>> relay.receive("v1", b"\\x07")
>>> sent[-1]["code"]
'VE-600'
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from pycrdt import Doc, Encoder, Map, create_sync_message, create_update_message, write_message

from ..errors import ProtocolError
from .limits import DocSize, Limits, check_declared, size_violation
from .protocol import (
    MAX_UPDATE_BYTES,
    ROOTS,
    Y_MESSAGE_AWARENESS,
    Y_MESSAGE_SYNC,
    error_msg,
    y_msg,
)
from .revert import restore
from .schema import SchemaViolation, Touched, check, check_roots
from .ydoc import GraphDoc, collecting

log = logging.getLogger(__name__)
Send = Callable[[Any, list[bytes]], None]
SYNC_STEP1, SYNC_STEP2, SYNC_UPDATE = 0, 1, 2
_FATAL = (KeyboardInterrupt, SystemExit, GeneratorExit)


class Reader:
    """lib0 varuint/varbytes reader that raises ``ProtocolError`` instead of misreading."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def uint(self) -> int:
        value, shift = 0, 0
        while True:
            if self.pos >= len(self.data) or shift > 63:
                raise ProtocolError("truncated or oversized varuint in a y frame")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    def bytes(self) -> bytes:
        n = self.uint()
        if self.pos + n > len(self.data):
            raise ProtocolError(f"a y frame announces {n} bytes but only {len(self.data) - self.pos} follow")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def string(self) -> str:
        return self.bytes().decode("utf-8")


class Relay:
    """Routes y frames between a ``GraphDoc`` and the views of its graph."""

    def __init__(self, gd: GraphDoc, max_bytes: int = MAX_UPDATE_BYTES, echo: bool = False,
                 limits: Limits | None = None) -> None:
        """``max_bytes``: largest frame; ``limits``: what views may add to the doc
        (default: ``Limits.from_env()``)."""
        self.gd = gd
        self.max_bytes = max_bytes
        self.limits = limits if limits is not None else Limits.from_env()
        #: an upper bound of the doc's encoded size, kept up to date by every update
        self.size = DocSize()
        #: bytes that taking refused updates back may still add beyond the size limit
        self.reserve = self.limits.max_doc_bytes // 16
        #: also send accepted frames back to their sender (for a comm shared by several pages)
        self.echo = echo
        self.views: dict[str, Send] = {}
        self._echo: set[str] = set()
        self._awareness: dict[str, tuple[bytes, dict[int, int]]] = {}
        self._shadow: Doc | None = None
        self._shadow_gen = -1
        self.rejected = 0
        gd.subscribe(self._broadcast)

    # ---- views ---------------------------------------------------------------------------
    def add_view(self, view_id: str, send: Send, echo: bool | None = None) -> None:
        """``echo``: also send this view its own accepted frames (a comm several pages share);
        ``None`` takes the relay's default."""
        self.views[view_id] = send
        if self.echo if echo is None else echo:
            self._echo.add(view_id)
        else:
            self._echo.discard(view_id)

    def remove_view(self, view_id: str) -> None:
        self.views.pop(view_id, None)
        self._echo.discard(view_id)
        _frame, clocks = self._awareness.pop(view_id, (b"", {}))
        if clocks:  # tell the others this view's cursors are gone (state null, clock + 1)
            self._relay(view_id, _awareness_removal(clocks))

    def hello(self, view_id: str) -> None:
        """A view is (re)connecting: send our state vector and everything it may lack."""
        send = self.views[view_id]
        with self.gd.lock:
            step1 = create_sync_message(self.gd.doc)
            step2 = bytes([Y_MESSAGE_SYNC, SYNC_STEP2]) + write_message(self.gd.doc.get_update())
        send(y_msg(), [step1])
        send(y_msg(), [step2])
        for other, (frame, _) in list(self._awareness.items()):
            if other != view_id:
                send(y_msg(), [frame])

    # ---- incoming ------------------------------------------------------------------------
    def receive(self, view_id: str, frame: bytes) -> None:
        """Handle one frame from ``view_id``; a bad frame is answered with a VE-600 error."""
        try:
            self._dispatch(view_id, bytes(frame))
        except _FATAL:
            raise
        except BaseException as exc:  # PanicException is a BaseException
            self.rejected += 1
            message = exc.message if isinstance(exc, ProtocolError) else f"{type(exc).__name__}: {exc}"
            if isinstance(exc, ProtocolError) and exc.hint:
                message += f" (fix: {exc.hint})"
            self._send(view_id, error_msg(f"update rejected, the graph is unchanged: {message}"))

    def _dispatch(self, view_id: str, frame: bytes) -> None:
        if len(frame) > self.max_bytes:
            raise ProtocolError(
                f"y frame of {len(frame)} bytes exceeds the {self.max_bytes}-byte limit",
                hint="split the edit into smaller transactions",
            )
        reader = Reader(frame)
        kind = reader.uint()
        if kind == Y_MESSAGE_SYNC:
            self._sync(view_id, reader)
        elif kind == Y_MESSAGE_AWARENESS:
            self._awareness_frame(view_id, frame, reader.bytes())
        else:
            raise ProtocolError(f"unknown y message type {kind}; expected 0 (sync) or 1 (awareness)")

    def _sync(self, view_id: str, reader: Reader) -> None:
        step = reader.uint()
        payload = reader.bytes()
        if step == SYNC_STEP1:
            with self.gd.lock:
                update = self.gd.doc.get_update(payload)
            reply = bytes([Y_MESSAGE_SYNC, SYNC_STEP2]) + write_message(update)
            self._send(view_id, y_msg(), [reply])
        elif step in (SYNC_STEP2, SYNC_UPDATE):
            if payload != b"\x00\x00":  # the empty update y-protocols sends after connecting
                self.accept(view_id, payload)
        else:
            raise ProtocolError(f"unknown sync step {step}; expected 0, 1 or 2")

    def accept(self, view_id: str, update: bytes) -> None:
        """Validate ``update`` on the scratch replica, then apply it to the real doc; a refused
        one is taken back everywhere (``_refuse``)."""
        with self.gd.lock:
            shadow = self._fresh_shadow()
            touched = self._apply_to_shadow(shadow, update)
            try:
                self._check(shadow, touched, len(update))
            except _FATAL:
                raise
            except BaseException as exc:  # a check that fails in any way refuses the update
                hint = getattr(exc, "hint", "")
                if not self._refuse(shadow, touched) and self.gd.authoritative:
                    hint = f"{hint}; then reload the view: it still shows the refused edit".lstrip("; ")
                message = str(exc) if isinstance(exc, SchemaViolation) else f"{type(exc).__name__}: {exc}"
                raise ProtocolError(message, hint=hint or None) from None
            generation = self.gd.generation
            self.gd.apply_remote(update, touched, view_id)
            # kernel writes during reconciliation (orphan edges) leave the replica stale
            self._shadow_gen = generation if self.gd.generation == generation else -1

    def _apply_to_shadow(self, shadow: Doc, update: bytes) -> Touched:
        """What ``update`` touches, applied to ``shadow``; an update that cannot be read, or
        that gives the doc a root it must not have, is refused as it is (nothing to revert)."""
        with collecting(shadow, ROOTS) as (touched, failures):
            try:
                shadow.apply_update(update)
                if failures:
                    raise ProtocolError(f"unreadable change: {failures[0]!r}")
                check_roots(shadow)
            except BaseException as exc:
                self._shadow = None  # possibly half-applied: rebuild from the real doc next time
                if isinstance(exc, _FATAL):
                    raise
                raise ProtocolError(str(exc) or type(exc).__name__) from None
        return touched

    def _check(self, shadow: Doc, touched: Touched, update_bytes: int) -> None:
        """The schema, the declared params and the doc's size limit (``limits.py``)."""
        check(shadow, touched, self.limits.max_string, roots=False)  # roots: checked on applying
        if self.gd.authoritative:  # a room replica cannot tell a file's inputs from junk
            check_declared(shadow, touched, self.gd.model, self.gd.lookup)
        self._check_size(shadow, update_bytes)

    def _check_size(self, shadow: Doc, update_bytes: int) -> None:
        sizes = self._sizes(shadow, update_bytes)
        violation = size_violation(sizes[1], sizes[0], self.limits.max_doc_bytes) if sizes else None
        if violation is not None:
            raise violation

    def _sizes(self, shadow: Doc, update_bytes: int) -> tuple[int, int] | None:
        """(real doc, scratch replica) in bytes when an update of ``update_bytes`` may take the
        doc near its limit; None when it cannot (then nothing is measured)."""
        bound = self.size.bound(update_bytes)
        if bound is not None and bound <= self.limits.max_doc_bytes:
            return None
        before = self.size.exact if self.size.grown == 0 and self.size.exact is not None else None
        if before is None:  # not measured since the last update
            before = len(self.gd.doc.get_update())
            self.size.measured(before)
        return before, len(shadow.get_update())

    def _refuse(self, shadow: Doc, touched: Touched) -> bool:
        """Take a refused update back: on the scratch replica, revert what it touched to the
        real doc's state, and send everyone (its sender too) the difference, which holds the
        refused items as deleted and the restored values (``revert.py``). The graph does not
        change. Not for a room's replica (the room is the authority there; its server repairs).

        What a take-back leaves (a few bytes per refused item) may go past the size limit by
        at most ``reserve`` bytes in all; past that, refusals are not taken back (returns False)."""
        self._shadow = None  # rebuilt from the real doc next time, whatever happens here
        if not self.gd.authoritative:
            return False
        try:
            restore(shadow, self.gd.doc, touched)
            diff = shadow.get_update(self.gd.doc.get_state())
            sizes = self._sizes(shadow, len(diff))
        except _FATAL:
            raise
        except BaseException:  # cannot revert: the sender stays apart
            log.warning("could not take a refused canvas update back", exc_info=True)
            return False
        beyond = max(0, sizes[1] - max(sizes[0], self.limits.max_doc_bytes)) if sizes else 0
        if beyond > self.reserve:
            return False
        self.reserve -= beyond
        self.gd.apply_remote(diff, touched, None)
        return True

    def _fresh_shadow(self) -> Doc:
        if self._shadow is None or self._shadow_gen != self.gd.generation:
            shadow: Doc = Doc()
            for root in ROOTS:
                shadow.get(root, type=Map)
            state = self.gd.doc.get_update()
            shadow.apply_update(state)
            self.size.measured(len(state))  # measured for free
            self._shadow, self._shadow_gen = shadow, self.gd.generation
        return self._shadow

    def _awareness_frame(self, view_id: str, frame: bytes, update: bytes) -> None:
        reader, clocks = Reader(update), {}
        for _ in range(min(reader.uint(), 1024)):
            client, clock = reader.uint(), reader.uint()
            state = reader.bytes()
            json.loads(state.decode("utf-8"))  # must be JSON text
            clocks[client] = clock
        self._awareness[view_id] = (frame, clocks)
        self._relay(view_id, frame)

    # ---- outgoing ------------------------------------------------------------------------
    def _broadcast(self, update: bytes, sender: object) -> None:
        self.size.grew(len(update))
        self._relay(sender, create_update_message(update))

    def _relay(self, sender: object, frame: bytes) -> None:
        for view_id in list(self.views):
            if view_id != sender or view_id in self._echo:
                self._send(view_id, y_msg(), [frame])

    def _send(self, view_id: str, msg: Any, buffers: list[bytes] | None = None) -> None:
        send = self.views.get(view_id)
        if send is None:
            return
        try:
            send(msg, buffers or [])
        except Exception:  # a closed comm must not stop the relay to the other views
            log.exception("sending to canvas view %s failed", view_id)


def _awareness_removal(clocks: dict[int, int]) -> bytes:
    enc = Encoder()
    enc.write_var_uint(len(clocks))
    for client, clock in clocks.items():
        enc.write_var_uint(client)
        enc.write_var_uint(clock + 1)
        enc.write_var_string("null")
    return bytes([Y_MESSAGE_AWARENESS]) + write_message(enc.to_bytes())
