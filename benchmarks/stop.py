"""Ctrl-C: seconds from SIGINT to the process's exit (the prompt back), on the quickstart's tiny twins.

Runs ``syngen run`` (the bundled quickstart, ``--fresh``, into a temporary folder) in a child process and sends
it SIGINT once the log says a stage's model is loaded (``--at``, repeatable), then once more for each stage the
given number of times (``--repeat``). Prints, per stop, the seconds until the "stopped by Ctrl-C" line and until
the process had exited, and its exit code (130 expected).

    python benchmarks/stop.py [--at synthesize --at ground --at segment] [--repeat 2] [--delay 0.3]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time


def stop_once(out: str, stage: str, delay: float) -> tuple[float, float, int]:
    """(seconds to the stopped line, seconds to the exit, exit code) of one run stopped after ``stage`` loads."""
    env = os.environ | {"HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "syngen.cli", "run", "--out", out, "--fresh", "--no-progress"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stderr is not None
    sent, line_s = None, float("nan")
    for line in proc.stderr:
        if sent is None and f"{stage}: loaded" in line:
            time.sleep(delay)  # inside the stage's model calls
            proc.send_signal(signal.SIGINT)
            sent = time.monotonic()
        elif sent is not None and "stopped by Ctrl-C" in line:
            line_s = time.monotonic() - sent
    proc.wait()
    if sent is None:
        raise SystemExit(f"the run ended before {stage}'s model was loaded (exit code {proc.returncode})")
    return line_s, time.monotonic() - sent, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--at", action="append", help="stage whose model load triggers the SIGINT")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--delay", type=float, default=0.3, help="seconds after the load line")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out")
        print(f"{'stopped in':>12} {'line s':>7} {'exit s':>7} code")
        for stage in args.at or ["synthesize", "ground", "segment"]:
            for _ in range(args.repeat):
                line_s, exit_s, code = stop_once(out, stage, args.delay)
                print(f"{stage:>12} {line_s:7.2f} {exit_s:7.2f} {code}")


if __name__ == "__main__":
    main()
