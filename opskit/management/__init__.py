"""Django management commands of the opskit app."""
