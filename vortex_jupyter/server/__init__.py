"""``vortex serve``: ComfyUI's HTTP/WebSocket API on our engine, queue and history.

``comfy.py``: the ComfyUI-compatible routes' logic (prompt queue, history shapes, the WebSocket
relay of engine events); ``app.py``: the Starlette app, its safety rules and ``serve()``.
Needs the ``server`` extra (``pip install vortex-jupyter[server]``: starlette, uvicorn,
websockets, python-multipart); importing this package imports none of them.
"""
