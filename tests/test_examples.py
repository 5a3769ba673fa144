"""The examples reach their accuracy targets with their default settings and seed, and
save their curves. They run as a user runs them: a fresh process, the script's path."""
import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


@pytest.mark.parametrize("script,target", [("mlp_digits.py", 0.97), ("cnn_digits.py", 0.97),
                                           ("lstm_digits.py", 0.95)])
def test_example_reaches_its_accuracy(script, target, tmp_path):
    plot = tmp_path / "curves.png"
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, script), "--no-progress",
                           "--plot", str(plot)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    match = re.search(r"final test accuracy ([0-9.]+)", proc.stdout)
    assert match, proc.stdout[-2000:]
    assert float(match.group(1)) >= target
    assert plot.stat().st_size > 1000 and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
