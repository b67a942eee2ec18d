"""Encrypted backup archives: the file format (archive.py) and the retention rule (retention.py).

Nothing here touches a database: the web layer (appliance.web.backup) produces the
parts (a SQLite copy, a pg_dump file, the installation identity) and restores them.
"""
