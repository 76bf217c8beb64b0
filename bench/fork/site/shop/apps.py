from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "shop"

    def ready(self):
        from django.db.backends.signals import connection_created

        from benchsite.hooks import start_thread_at_import

        connection_created.connect(_name_connection)
        start_thread_at_import()


def _name_connection(sender, connection, **kwargs):
    """Each PostgreSQL session says which process opened it (pg_stat_activity shows it)."""
    if connection.vendor == "postgresql":
        import os

        with connection.cursor() as c:
            c.execute("SET application_name = %s", [f"pid-{os.getpid()}"])
