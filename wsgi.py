"""WSGI entry point: `gunicorn -c gunicorn.conf.py wsgi:app` (each worker loads the models)."""

from app import create_app

app = create_app()
