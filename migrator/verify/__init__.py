"""`pt-migrate verify`: run a script and its migration side by side and check the migration (see command.py)."""
