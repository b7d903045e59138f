"""Example 1: is the service up, and what does it serve?

    python 01_health_and_stats.py [--url http://localhost:8000]   (or VECTORWISE_URL)

Exits 0 when the service answers healthy, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys

from vectorwise import VectorWiseClient, VectorWiseError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("VECTORWISE_URL", "http://localhost:8000"))
    args = parser.parse_args(argv)

    with VectorWiseClient(args.url, retries=2) as vw:
        health = vw.health()
        print(
            f"{args.url}: {health['service']} is {health['status']}, "
            f"{health['vectors_indexed']:,} vectors indexed"
        )
        if health["status"] != "healthy":
            return 1

        stats = vw.stats()
        print("\nIndex statistics")
        for key, value in stats.items():
            if key not in ("calibration", "recall_monitor"):
                print(f"  {key:<20} {value}")
        calibration = stats.get("calibration")
        if "calibration" in stats and calibration is None:
            print("  calibration          none (profiles fall back to fixed settings)")
        elif calibration is not None:
            print(
                f"  calibration          {calibration['source']}, {calibration['queries']} queries;"
                " profile settings:"
            )
            for p in calibration["profiles"]:
                print(
                    f"    k={p['k']:<4} {p['profile']:<14} {p['setting']:<11} "
                    f"expected recall {p['expected_recall']:.4f}"
                )
        monitor = stats.get("recall_monitor")
        if monitor is not None:
            print(
                f"  recall_monitor       {monitor['evaluated']} of {monitor['sampled']} sampled "
                f"searches re-run exactly ({monitor['sample_rate']:.0%} sampled)"
            )
            for m in monitor["profiles"]:
                print(
                    f"    {m['label']:<14} recall {m['recall_mean']:.3f} "
                    f"[{m['ci95_low']:.3f}, {m['ci95_high']:.3f}] "
                    f"over {m['samples']}: {m['status']}"
                )
        print(
            f"\nA query is a vector of {stats['dimension']} numbers; k may be 1..{stats['max_k']}."
        )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except VectorWiseError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
