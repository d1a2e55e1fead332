"""The recipes behind the GPU chapters: ``python -m lorakit.experiments NAME [--preset P] [--out DIR]``.

Each submodule defines ``main(argv)`` and writes a record with :func:`lorakit.runs.save_record`.
"""
