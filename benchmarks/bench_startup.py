"""What attaching ``AlertHandler()`` adds to a process's start-up: wall time and peak RSS.

Each case runs in a fresh interpreter, N times, side by side (the cases take
turns, so a busy moment of the machine hits them alike):

a. ``import logging``: the floor;
b. ``import logging; import smtp_alerts; smtp_alerts.AlertHandler()``, with the
   settings in the environment (TO, USERNAME, PASSWORD, SPOOL_DIR): nothing logged;
c. the same with ``SMTP_ALERTS_FALLBACK_URLS`` set; the script also checks
   that apprise is not imported.

Printed per case: wall milliseconds and peak RSS in MiB (median and range; the
peak as GNU ``/usr/bin/time`` reports it, which must be installed), and the
differences of the medians, b - a and c - a. The wall time includes GNU time's
own start (about a millisecond), alike in every case. By default the package
is the one installed in this interpreter; ``--wheel`` builds a wheel of this
checkout and installs it into a fresh virtual environment first (as users get
it: no editable-install finder).

Run: ``.venv/bin/python benchmarks/bench_startup.py [--runs 15] [--wheel]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GNU_TIME = "/usr/bin/time"

CASES = {
    "a. import logging": "import logging",
    "b. + AlertHandler()": "import logging, smtp_alerts\nsmtp_alerts.AlertHandler()",
    "c. + FALLBACK_URLS": (
        "import logging, sys, smtp_alerts\n"
        "smtp_alerts.AlertHandler()\n"
        "assert 'apprise' not in sys.modules, 'apprise was imported'"
    ),
}


def environment(spool: Path, *, fallback: bool) -> dict[str, str]:
    """This environment without SMTP_ALERTS_*, plus a valid configuration (nothing is sent)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTP_ALERTS_")}
    env.update(
        SMTP_ALERTS_TO="oncall@example.com",
        SMTP_ALERTS_USERNAME="alerts@example.com",
        SMTP_ALERTS_PASSWORD="not-a-real-app-password",
        SMTP_ALERTS_SPOOL_DIR=str(spool),
    )
    if fallback:
        env["SMTP_ALERTS_FALLBACK_URLS"] = "json://127.0.0.1:9/hook"
    return env


def measure(python: str, code: str, env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall milliseconds and peak RSS in MiB of one fresh interpreter running ``code``.

    The peak is GNU time's ``%M`` (as ``/usr/bin/time -v`` reports it): the
    child's own rusage would include what the forking benchmark itself had
    mapped before the exec.
    """
    started = time.perf_counter()
    result = subprocess.run(  # noqa: S603 - our own interpreter and script
        [GNU_TIME, "-f", "peak-kib %M", python, "-c", code],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = (time.perf_counter() - started) * 1000
    if result.returncode != 0:
        raise RuntimeError(f"{code!r} failed:\n{result.stderr}")
    peak = next(
        line for line in reversed(result.stderr.splitlines()) if line.startswith("peak-kib")
    )
    return wall, int(peak.split()[1]) / 1024


def wheel_python(workdir: Path) -> str:
    """Build a wheel of this checkout, install it in a fresh venv; that venv's python."""
    wheels, venv = workdir / "wheels", workdir / "venv"
    subprocess.run(  # noqa: S603 - pip of this interpreter
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(ROOT), "-w", str(wheels)],
        check=True,
    )
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)  # noqa: S603
    python = str(venv / "bin" / "python")
    (wheel,) = wheels.glob("smtp_alerts-*.whl")
    subprocess.run([python, "-m", "pip", "install", "-q", str(wheel)], check=True)  # noqa: S603
    return python


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):7.1f}  ({min(values):.1f}-{max(values):.1f})"


def main() -> None:
    """Run every case ``--runs`` times, in turns, and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs of each case (default 15)")
    parser.add_argument("--wheel", action="store_true", help="build and install a wheel first")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        workdir = Path(tmp)
        python = wheel_python(workdir) if args.wheel else sys.executable
        spool = workdir / "spool"
        envs = {name: environment(spool, fallback=name.startswith("c.")) for name in CASES}
        # Outside the checkout: its smtp_alerts/ must not shadow the installed package.
        cwd = workdir
        for name, code in CASES.items():  # once each, unmeasured: warm the disk cache
            measure(python, code, envs[name], cwd)
        walls: dict[str, list[float]] = {name: [] for name in CASES}
        rss: dict[str, list[float]] = {name: [] for name in CASES}
        for _ in range(args.runs):
            for name, code in CASES.items():
                wall, peak = measure(python, code, envs[name], cwd)
                walls[name].append(wall)
                rss[name].append(peak)
    source = "wheel in a fresh venv" if args.wheel else f"installed in {sys.prefix}"
    print(
        f"smtp-alerts start-up, {args.runs} runs each ({source}, Python {sys.version.split()[0]})"
    )
    print(f"{'case':24} {'wall ms: median (range)':>26} {'peak RSS MiB: median (range)':>32}")
    for name in CASES:
        print(f"{name:24} {summary(walls[name]):>26} {summary(rss[name]):>32}")
    floor_wall = statistics.median(walls["a. import logging"])
    floor_rss = statistics.median(rss["a. import logging"])
    for name in list(CASES)[1:]:
        added_wall = statistics.median(walls[name]) - floor_wall
        added_rss = statistics.median(rss[name]) - floor_rss
        print(f"{name} - a: {added_wall:+.1f} ms, {added_rss:+.1f} MiB (medians)")


if __name__ == "__main__":
    main()
