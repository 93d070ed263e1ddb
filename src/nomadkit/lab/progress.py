"""Progress lines for long lab work (image builds, boots): elapsed seconds, one line per step."""

from __future__ import annotations

import sys
import time


class Progress:
    """Prints `[  12.3s] message` to stderr so a person sees a long build or boot moving."""

    def __init__(self, quiet: bool = False) -> None:
        self.start = time.monotonic()
        self.quiet = quiet

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"[{self.elapsed():6.1f}s] {message}", file=sys.stderr, flush=True)
