"""``python manage.py opskit ...``: the opskit CLI inside the project's own Django."""
