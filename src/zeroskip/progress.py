"""Progress bars for long loops (tqdm), drawn on stderr and only where asked for.

Library calls draw none unless given progress=True; the `zeroskip` command asks for them when
stderr is a terminal and --no-progress is not given. A bar never writes to stdout, and the lines
the loops print go through echo(), which clears a bar on the terminal before the line and redraws
it after, so stdout holds the same text with bars and without. Without tqdm, no bars are drawn.
"""
from __future__ import annotations

import contextlib
import sys


class _NoBar:
    """Stands in for a tqdm bar when none is drawn."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass


def _tqdm():
    try:
        from tqdm import tqdm
    except ImportError:  # a machine with torch and triton only (see the README): no bars
        return None
    return tqdm


@contextlib.contextmanager
def bar(total: int, desc: str, progress: bool, unit: str = "it"):
    """`with bar(total, desc, progress) as b:` b.update() per step and b.set_postfix_str(what) for
    the current item; a bar on stderr (removed when done) if `progress`, else nothing."""
    if not isinstance(progress, bool):
        raise ValueError(f"progress must be a bool, got {progress!r}")
    tqdm = _tqdm() if progress else None
    if tqdm is None:
        yield _NoBar()
        return
    with tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True) as b:
        yield b


def echo(text: str = "") -> None:
    """print(text, flush=True) to stdout, with any bar on the terminal kept below the line."""
    tqdm = _tqdm() if "tqdm" in sys.modules else None
    if tqdm is None:
        print(text, flush=True)
        return
    tqdm.write(text, file=sys.stdout)
    sys.stdout.flush()
