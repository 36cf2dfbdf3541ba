"""Side-by-side benchmarks of django-broadcaster and its peers.

Run ``python -m benchmarks [--quick] [--json PATH] [--only SYSTEM]`` from the
repository root. See ``docs/performance.rst`` for what each scenario measures.
"""
