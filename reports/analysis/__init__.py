"""Analyses: what the renderers show, computed from sessions (pyinstrument's "processors").

- ``views``: derived views of one session (stage shares, per-interval series, distributions);
- ``compare``: the statistics of ``tickscope compare`` (bootstrap of runs and intervals, verdicts);
- ``merge``: the exact union of sessions across hosts (the CLI writes the result).

Plain functions over ``Session`` objects and plain data: nothing here loads or writes files.
"""
