"""The application: the ``rag`` command line (``app.cli``) and the long-running process it starts
(``app.runtime``). The top layer: it may import every other package (``api``, ``evals``,
``ingestion``, ``rag``) and none of them imports it.
"""
