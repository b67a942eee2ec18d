"""Lab tests: the playbooks against fresh Debian hosts (pytest -m lab tests/lab)."""
