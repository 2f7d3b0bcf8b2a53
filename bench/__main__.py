"""Run the benchmark modules of this package: every ``bench/<name>.py`` with a
``main()`` function, in name order, or only the ones named on the command line
(``python -m bench images search``)."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
import traceback
from pathlib import Path


def module_names() -> list[str]:
    """Benchmark modules in this package, in name order (private ones excluded)."""
    here = str(Path(__file__).resolve().parent)
    return sorted(
        info.name
        for info in pkgutil.iter_modules([here])
        if not info.ispkg and not info.name.startswith("_")
    )


def run(argv: list[str]) -> int:
    available = module_names()
    wanted = argv or available
    unknown = [name for name in wanted if name not in available]
    if unknown:
        print(
            f"unknown benchmark module(s): {', '.join(unknown)}; available: {', '.join(available)}"
        )
        return 2
    failed = []
    for name in wanted:
        started = time.perf_counter()
        try:
            # Imported one at a time: a module's import cost must not land in another's figures.
            main = getattr(importlib.import_module(f"bench.{name}"), "main", None)
            if not callable(main):
                if argv:
                    print(f"bench/{name}.py has no main()")
                    failed.append(name)
                continue
            print(f"=== bench {name} ===", flush=True)
            main()
        except Exception:
            # One broken benchmark must not hide the figures of the others.
            traceback.print_exc()
            failed.append(name)
        print(f"=== bench {name}: {time.perf_counter() - started:.1f} s ===\n", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
