"""The assets a run materializes, one month at a time: ``trips`` (+ ``quarantine``) and ``daily_summary``.

Plain functions, no orchestrator: the Prefect tasks, ``taxi-assets materialize`` and the benchmarks call the same ones.
"""
