"""Executors: which samples run where. The runner runs stages over samples; an executor decides the process,
the shard and the machine (after datatrove's split between pipeline steps and executors).

The shard itself (:mod:`syngen.shard`) sits below the runner, which reads only its own share.

- :mod:`syngen.executors.base`: the lifecycle every executor shares (prepare, run the shards, export, report),
  and ``syngen export`` (merge the shards' stores, export).
- :mod:`syngen.executors.local`: one process, or one shard of N (``--shard K/N`` or a launcher's environment).
- :mod:`syngen.executors.ray`: the shards as tasks on a Ray cluster, on actors that keep their models loaded.
"""
