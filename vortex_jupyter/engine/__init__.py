"""The engine: decides WHAT runs; an injected ``Executor`` decides HOW (DESIGN.md §4).

Modules, in the order a run uses them:

- ``hashing``   canonical encoding of params and the Merkle key of a node (``node_key``);
- ``keys``      ``KeyIndex``: keys kept up to date incrementally from the model's changes;
- ``validation`` ``ValidationMemo``: validate only what changed since the last success;
- ``plan``      topological order (memoised) and the planned/cached split;
- ``cache``     ``OutputCache``: key -> executor references, LRU with entry/byte bounds;
- ``inflight``  the keys runs in flight compute: a run awaits them instead of computing them again;
- ``run``       ``Engine.run``: tasks, one batch to the executor, events to listeners;
- ``sharing``   ``SharedRun``: a run's tasks in waves around the keys other runs compute;
- ``state``     ``RunState``/``Run``: what a run did; outputs fetched lazily;
- ``executor``  the Executor seam (contract); ``inprocess``: ``InProcessExecutor``;
  ``executors``: ``get_executor("inline" | "workers" | None)``, ``register`` (the front door adds "workers");
- ``events``    the events a run streams (contract); ``testing``: key-stability helpers.

Everything here is torch-free and cheap to import.
"""
