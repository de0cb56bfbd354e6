"""A Django app with the benchmark's two tables (see bench/django_delete.py)."""
