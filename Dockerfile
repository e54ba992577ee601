# The one image of every process (deploy/kubernetes/ runs it with different commands).
#   docker build -t fitness .
FROM python:3.11-slim-bookworm

# JSON log lines (the default; `make run` prints plain ones for people)
# DJANGO_ENV=production: a secret key and allowed hosts from the environment, https behind the ingress
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 DJANGO_SETTINGS_MODULE=fitness.settings LOG_FORMAT=json \
    DJANGO_ENV=production
WORKDIR /app

# requirements.txt only: the runtime, none of the test tooling (requirements-dev.txt).
# torch and torchvision from PyTorch's CPU index first: the image runs on CPUs, and the
# default (CUDA) wheels would add several GB for nothing.
COPY requirements.txt .
RUN pip install --index-url https://download.pytorch.org/whl/cpu \
        "$(grep '^torch==' requirements.txt)" "$(grep '^torchvision==' requirements.txt)" \
    && pip install -r requirements.txt

COPY . .
# the static files that the web process serves itself (WhiteNoise: hashed names, gzip copies);
# the build has no secrets, and collectstatic needs none
RUN DJANGO_ENV=development python manage.py collectstatic --noinput \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin fitness
USER 10001
EXPOSE 8000 5555
CMD ["gunicorn", "fitness.wsgi", "--bind", "0.0.0.0:8000", "--workers", "4"]
