"""How nodes run: worker processes, their wire protocol and their shared memory.

Kernel side: ``pool.WorkerExecutor`` (the engine's Executor) -> ``batch`` (one batch on a
worker; ``deaths``: whom a worker's death blames, node deadlines) -> ``supervisor``/``process``
(spawn, watch, respawn) -> ``launcher`` (fork server); ``procs``: process groups, orphans, OOM.
Worker side: ``worker`` (process main, threads) -> ``runner`` (calls nodes) -> ``store``
(outputs by key). Shared: ``protocol`` (every message, as types), ``shm`` (the arena),
``tensors`` (handles, zero-copy wrapping). ``arbiter`` budgets memory per device.

Nothing is imported here: ``import vortex_jupyter`` stays light, torch loads only in workers.
"""
