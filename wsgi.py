"""gunicorn entry point: ``gunicorn wsgi:app``."""

from handlers import create_app

app = create_app()
