# LSTM Lab web app: serves the models in models/ with gunicorn (see gunicorn.conf.py). Only the
# serving dependency group of pyproject.toml is installed: no TensorFlow, Keras, pytest or Playwright
# (image models run from their model.tflite; one without a current export is shown unavailable with
# `python -m training export <slug>`, to run where the training group is installed). In
# production behind nginx: docker-compose.yml. Alone, for a try:
#   docker build -t lstmlab . && docker run -p 8000:8000 -e FLASK_SECRET_KEY=$(openssl rand -hex 32) lstmlab
# (without FLASK_SECRET_KEY a key is generated into /srv/lstmlab/instance: mount a volume there
# to keep it across containers).
FROM python:3.11-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 LSTMLAB_BIND=0.0.0.0:8000 WEB_CONCURRENCY=2
WORKDIR /srv/lstmlab
COPY pyproject.toml .
# pip reads PEP 735 dependency groups from 25.1 on
RUN pip install --no-cache-dir --upgrade "pip>=25.1" && pip install --no-cache-dir --group serving
COPY app ./app
COPY templates ./templates
COPY static ./static
COPY models ./models
COPY wsgi.py gunicorn.conf.py ./
# The gettext catalogues compiled now: the app's user cannot write under /srv/lstmlab
RUN python -c "from app.i18n import TRANSLATIONS, compile_catalogues; compile_catalogues(TRANSLATIONS)"
# The models are code to the server: not writable by the app's user (the app refuses a group- or
# world-writable models folder). The instance folder is the app's own (the generated secret key).
RUN useradd --system --no-create-home lstmlab && chmod -R go-w models \
    && mkdir -p instance && chown lstmlab instance && chmod 0700 instance

# The lab bench's training worker (docker-compose.yml's `worker`, `--target training`): the same
# app plus the training group (TensorFlow, Keras) and the trainer; one niced Huey consumer.
FROM base AS training
RUN pip install --no-cache-dir --group training
COPY training ./training
USER lstmlab
CMD ["python", "-m", "app.lab"]

# The web image (the default target): serving only.
FROM base AS serving
USER lstmlab
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz').status != 200)"
CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
