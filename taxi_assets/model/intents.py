"""The seed's run intents: what a run rebuilds besides the stale months."""

from __future__ import annotations

from typing import Final, Literal, get_args

Intent = Literal["", "reprocess", "test_subset"]
"""``""``: incremental (only stale months); ``"reprocess"``: every selected month (all when none is selected);
``"test_subset"``: the first two months of the selection."""

INTENTS: Final[tuple[str, ...]] = get_args(Intent)
