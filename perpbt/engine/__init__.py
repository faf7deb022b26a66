"""The numba engine: every function here is ``*_nb`` and free of Python objects.

``loop.run_nb`` is the one bar loop; its behaviour is chosen by runtime flags in
``EngineConfig`` so a single compiled kernel serves every option.
"""
