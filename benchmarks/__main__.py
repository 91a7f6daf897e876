"""`python -m benchmarks`: run every benchmark module's main() in turn; exit non-zero if any failed."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import benchmarks


def main() -> int:
    failed = []
    for info in sorted(pkgutil.iter_modules(benchmarks.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"benchmarks.{info.name}")
        if not callable(getattr(module, "main", None)):
            continue
        print(f"== benchmarks.{info.name}", flush=True)
        if module.main([]) != 0:
            failed.append(info.name)
    if failed:
        print(f"benchmarks failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
