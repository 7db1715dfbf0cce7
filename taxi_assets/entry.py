"""The ``taxi-assets`` command: for ``run``, the Prefect API server is launched before anything else is imported.

A run that has work waits for its Prefect API server (~3 s of start-up on its own core here) before the flow
can begin, while this process needs only ~2 s for its own imports, the plan and Prefect's client. Launched from
:mod:`taxi_assets.cli`, the server started after the data stack's imports and the plan (0.5 s later); launched
here, first, their time overlaps its start-up. A run with nothing stale stops the server unused at once (it is
still importing then: nothing touched its database), so the no-op path pays no wait, only the idle core's time.
Every other command goes straight to :func:`taxi_assets.cli.main`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def command_of(argv: Sequence[str]) -> str | None:
    """The sub-command in ``argv``: its first word that is not an option (the only global option is a flag)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    api = None
    if command_of(args) == "run":
        from taxi_assets.prefect_api import launch, set_defaults

        set_defaults()
        api = launch()
    try:
        from taxi_assets.cli import main as cli_main

        return cli_main(args, api=api)
    finally:
        if api is not None:
            api.stop()  # already stopped by the run; here for a parse error, --help or an import failure
