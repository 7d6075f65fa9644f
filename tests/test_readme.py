"""The README's promises: its quick start is what CI runs, and its code examples (and that of
the estimators' guide, moved from it) run."""

import os
import re
import subprocess
import sys

REPO = os.path.join(os.path.dirname(__file__), "..")


def _readme(page="README.md"):
  with open(os.path.join(REPO, page), encoding="utf-8") as f:
    return f.read()


def _quick_start_commands():
  section = _readme().split("## Quick start", 1)[1].split("\n## ", 1)[0]
  return re.findall(r"```bash\n(.*?)\n```", section, re.S)


def test_quick_start_is_two_commands_and_ci_runs_the_second():
  commands = _quick_start_commands()
  assert len(commands) == 2
  with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as f:
    ci_lines = [line.strip() for line in f if line.strip() and not line.startswith("#")]
  assert commands[1] in ci_lines


def _run_example(section_title: str, tmp_path, page="README.md") -> str:
  """Runs the one Python block of a section of the README (or of another page); returns what it
  printed."""
  section = _readme(page).split(f"## {section_title}", 1)[1].split("\n## ", 1)[0]
  (code,) = re.findall(r"```python\n(.*?)\n```", section, re.S)
  script = tmp_path / "example.py"
  script.write_text(code)
  result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  return result.stdout


def test_estimator_example_runs(tmp_path):
  stdout = _run_example("Train your own model", tmp_path)
  start = float(re.search(r"loss at the start: ([\d.]+)", stdout)[1])
  end = float(re.search(r"loss after 100 forward-gradient steps: ([\d.]+)", stdout)[1])
  assert end < 0.5 * start


def test_activity_perturbation_example_runs_and_beats_weight_perturbation(tmp_path):
  stdout = _run_example("Example: activity against weight perturbation", tmp_path,
                        page="docs/estimators.md")
  weight, activity = map(float, re.search(
      r"weight perturbation (-?[\d.]+), activity perturbation (-?[\d.]+)", stdout).groups())
  assert activity > weight and activity > 0.1
