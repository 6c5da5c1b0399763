"""The run store and its planning: which runs the studies need, and how they get trained.

``plan`` (studies -> deduplicated runs with typed configs), ``ids`` (content addresses: config, data
versions, training-code digest), ``store`` (``RunDir``: the one owner of a run folder's files),
``execute`` (one run: lock, MLflow, training, outputs), ``snakemake`` (fan-out of the missing runs),
``overview`` (``mdeaux runs``, the cost report), ``tracking``/``mlflow_import`` (MLflow), ``plots``
(per-run figures and readers of a run's files).
"""
