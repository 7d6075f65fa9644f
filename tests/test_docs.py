"""The pages of docs/: the estimators' table is the registry's, and relative links resolve."""

import os
import re

import pytest

from fgjax import estimators

REPO = os.path.join(os.path.dirname(__file__), "..")
PAGES = ["README.md"] + [os.path.join("docs", name)
                         for name in sorted(os.listdir(os.path.join(REPO, "docs")))]


def _read(page: str) -> str:
  with open(os.path.join(REPO, page), encoding="utf-8") as f:
    return f.read()


def estimator_table() -> str:
  """The table of docs/estimators.md, written from the registry."""
  rows = ["| `config.estimator` | what it computes | consumes | local heads | gradient | runs |",
          "|---|---|---|---|---|---|"]
  for e in estimators.REGISTRY.values():
    rows.append(f"| `{e.name}` | {e.summary} | {e.consumes} | {'yes' if e.local_heads else 'no'} "
                f"| {'exact' if e.exact else 'stochastic'} | "
                f"{'one device or data parallel' if e.data_parallel else 'one device'} |")
  return "\n".join(rows)


def test_the_estimators_table_is_the_registry():
  table = estimator_table()
  assert table in _read("docs/estimators.md"), f"write this table instead:\n{table}"


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_resolve(page):
  """Every relative link of a page names a file or folder of the repository."""
  targets = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", _read(page))
  missing = [t for t in targets
             if not os.path.exists(os.path.join(REPO, os.path.dirname(page), t))]
  assert not missing, missing
