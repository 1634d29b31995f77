"""JupyterLab integration: workflow documents, real-time collaboration, the canvas MIME output.

Modules, one concept each:

- ``ydoc``      ``YVortex``: a workflow file as a shared document on the Jupyter server
                (jupyter_ydoc entry point ``vortex``; jupyter-collaboration loads, saves and
                relays it; repairs what breaks the schema)
- ``server``    finding the Jupyter server a kernel runs under (URL, token, root folder)
- ``room``      ``RoomClient``: a kernel's graph as one more collaborator of a document's room
- ``document``  ``vx.open(path)`` and the kernel side of a workflow document's panel
- ``views``     the canvas MIME output and the comm its views connect through

The browser half is the JupyterLab extension built from ``js/src/lab/``.
"""
