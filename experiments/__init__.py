"""The reproduction of Rike & Forland's Table I and Figures: scripts run from the repository root
as modules (`python -m experiments.table1`, `python -m experiments.plot`), sharing `runs`."""
