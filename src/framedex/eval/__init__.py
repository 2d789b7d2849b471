"""framedex.eval: quality vs cost of every frame sampler on a synthetic world with known truth.

``framedex eval --suite small`` renders a deterministic suite of synthetic videos
(:mod:`.suite`), indexes each once, scores every sampler and budget against the truth spans
(:mod:`.metrics`, :mod:`.runner`), tunes sampler defaults on a held-out split and writes
Parquet, markdown and a cost-vs-quality plot (:mod:`.report`). ``framedex export-selections``
(:mod:`.export`) writes per-question frame selections for real benchmarks in the layout the
official lmms-eval integrations read. Heavy imports happen inside the functions.
"""
