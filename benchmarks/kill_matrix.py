"""The kill matrix, long: many trials of SIGKILL at a random moment, losses and duplicates.

Each trial (see ``tests/integration/kill_scenario.py``) raises six incidents
against a server whose first message hangs, kills the process at a random
moment, and restarts on the same SPOOL_DIR. Prints, per trial and in total, the
alerts that had to arrive, those lost, and the duplicates.

Run: ``.venv/bin/python benchmarks/kill_matrix.py --trials 100``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.kill_scenario import run_trial


def main() -> int:
    """Run the trials; exit status 1 when any alert was lost."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    args = parser.parse_args()
    must = lost = duplicates = 0
    for number in range(args.trials):
        with tempfile.TemporaryDirectory() as directory:
            trial = run_trial(Path(directory))
        must += len(trial.must)
        lost += len(trial.lost)
        duplicates += trial.duplicates
        print(
            f"trial {number + 1:3}: kill after {trial.kill_after:4.2f} s, "
            f"accepted {len(trial.accepted)}, must arrive {len(trial.must)}, "
            f"lost {trial.lost or 0}, duplicates {trial.duplicates}",
            flush=True,
        )
    print(
        f"\n{args.trials} trials: {must} alerts had to arrive, {lost} lost, {duplicates} duplicates"
    )
    return 1 if lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
