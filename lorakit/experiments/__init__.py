"""The recipes behind the GPU chapters:
``python -m lorakit.experiments NAME [--preset P] [--out DIR]``.

Each submodule defines ``main(argv)`` and writes a record with :func:`lorakit.runs.save_record`.
The experiments on the E2E task take ``--data auto|synthetic|real|DIR``
(:func:`lorakit.data.sources.data_source`); the grids (``baselines``, ``which-rank``) also take
``--jobs N``, N runs at once in worker processes (:mod:`lorakit.experiments._jobs`).
"""
