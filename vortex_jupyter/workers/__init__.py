"""How nodes run: worker processes, their wire protocol and their shared memory.

Kernel side: ``executor.WorkerExecutor`` (the engine's Executor) -> ``parallel`` (which worker
slots run a batch; ``copies``/``spread``: a model loaded on several) -> ``batch`` (one segment on a
worker; ``deaths``: whom a worker's death blames, node deadlines) -> ``supervisor``/``process``
(spawn, watch, respawn) -> ``launcher`` (fork server); ``procs``: process groups, orphans, OOM.
Worker side: ``worker`` (process main, threads) -> ``runner`` (calls nodes) -> ``store``
(outputs by key). Shared: ``protocol`` (every message, as types), ``shm`` (the arena),
``tensors`` (handles, zero-copy wrapping). ``arbiter`` budgets memory per device.

Nothing is imported here: ``import vortex_jupyter`` stays light, torch loads only in workers.
"""
