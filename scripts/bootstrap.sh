#!/usr/bin/env bash
# Prepare this machine for the project: system packages, services, virtualenv, database,
# migrations, static files and the RabbitMQ topology. Idempotent; every step is skipped when done.
#
#   scripts/bootstrap.sh          what `make setup` runs (and so `make run` and `make test`)
#   scripts/bootstrap.sh --with-browser
#                                 also headless Chromium and chromedriver for tests/browser/,
#                                 and Prometheus (promtool) for tests/deploy/test_prometheus.py
#                                 (what `make test` runs; `make run` does not need them)
#
# Environment: DATABASE_URL and CELERY_BROKER_URL as in fitness/settings.py. Services are
# installed and started only when they run on this machine (127.0.0.1/localhost).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
DB_NAME=fitness
DB_USER=fitness
DB_PASSWORD=fitness
WITH_BROWSER=0
for arg in "$@"; do
    case "$arg" in
        --with-browser) WITH_BROWSER=1 ;;
        *) echo "usage: $0 [--with-browser]" >&2; exit 2 ;;
    esac
done

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
have() { command -v "$1" >/dev/null 2>&1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

APT_UPDATED=0
apt_install() {
    if [ "$APT_UPDATED" = 0 ]; then
        say "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    say "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && exec 3>&- 3<&-; }

wait_for_port() {  # port, what, seconds
    for _ in $(seq 1 "$3"); do port_open "$1" && return 0; sleep 1; done
    echo "error: $2 did not start listening on 127.0.0.1:$1 within $3 s" >&2
    return 1
}

# --- Python ---------------------------------------------------------------------------
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "error: Python 3.11 or newer is needed as python3 (found: $(python3 --version 2>&1))" >&2
    exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
    if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then apt_install python3-venv; fi
    say "creating the virtualenv $VENV"
    python3 -m venv "$VENV"
fi
STAMP="$VENV/.requirements.sha256"
# requirements-dev.txt: the runtime (requirements.txt, what the image installs) plus the tests'
# and tooling's packages; `make run` and `make test` both have them.
if [ ! -f "$STAMP" ] || ! sha256sum --quiet -c "$STAMP" 2>/dev/null; then
    say "installing Python requirements into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r requirements-dev.txt
    sha256sum requirements.txt requirements-dev.txt > "$STAMP"
fi

# --- Headless Chromium for the browser tests (tests/browser/) ------------------------------
# Debian's chromium and its matching chromedriver: Selenium uses these paths and never
# downloads a browser or driver of its own.
if [ "$WITH_BROWSER" = 1 ] && { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; }; then
    apt_install chromium chromium-driver
fi

# --- promtool and Prometheus for the tests of deploy/prometheus/ (tests/deploy/test_prometheus.py)
# Debian's prometheus package: the tests run `promtool check|test rules` and start a Prometheus
# server of their own (own config, storage and free port). The package's service, which would
# listen on 9090, is not wanted: it is stopped and disabled right after the install.
if [ "$WITH_BROWSER" = 1 ] && { ! have promtool || ! have prometheus; }; then
    apt_install prometheus
    if [ -d /run/systemd/system ]; then
        as_root systemctl disable --now prometheus >/dev/null 2>&1 || true
    elif [ -x /etc/init.d/prometheus ]; then
        as_root /etc/init.d/prometheus stop >/dev/null 2>&1 || true
    fi
fi

# --- PostgreSQL -----------------------------------------------------------------------
if ! port_open 5432; then
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then apt_install postgresql; fi
    say "starting PostgreSQL"
    for version in /etc/postgresql/*; do
        as_root pg_ctlcluster --skip-systemctl-redirect "$(basename "$version")" main start 2>/dev/null \
            || as_root pg_ctlcluster "$(basename "$version")" main start || true
    done
    wait_for_port 5432 PostgreSQL 60
fi
psql_admin() {
    # The postgres superuser through the local socket (peer auth on a stock Debian
    # install), or over TCP where the server trusts local connections.
    if id postgres >/dev/null 2>&1 && as_root runuser -u postgres -- psql -qtAX -c 'select 1' >/dev/null 2>&1; then
        as_root runuser -u postgres -- psql -qtAX "$@"
    else
        psql -h 127.0.0.1 -U postgres -qtAX "$@"
    fi
}
if [ "$(psql_admin -c "select 1 from pg_roles where rolname = '$DB_USER'")" != 1 ]; then
    say "creating the PostgreSQL role $DB_USER"
    psql_admin -c "create role $DB_USER login createdb password '$DB_PASSWORD'"
fi
if [ "$(psql_admin -c "select 1 from pg_database where datname = '$DB_NAME'")" != 1 ]; then
    say "creating the database $DB_NAME"
    psql_admin -c "create database $DB_NAME owner $DB_USER"
fi

# --- RabbitMQ -------------------------------------------------------------------------
if ! port_open 5672; then
    if ! have rabbitmq-server && [ ! -x /usr/sbin/rabbitmq-server ]; then apt_install rabbitmq-server; fi
    say "starting RabbitMQ"
    as_root /usr/sbin/rabbitmq-server -detached 2>/dev/null || as_root rabbitmq-server -detached
    wait_for_port 5672 RabbitMQ 120
    as_root rabbitmqctl -q await_startup >/dev/null
fi
# The management plugin: its HTTP API (port 15672) gives /metrics queue depths with unacked
# counts and Flower its broker tab. Enabling it online does not restart the node.
if ! as_root rabbitmq-plugins -q is_enabled rabbitmq_management >/dev/null 2>&1; then
    say "enabling the RabbitMQ management plugin"
    as_root rabbitmq-plugins -q enable rabbitmq_management >/dev/null
fi
wait_for_port 15672 "the RabbitMQ management API" 60

# --- Schema and topology --------------------------------------------------------------
say "migrating the database"
"$VENV/bin/python" manage.py migrate --noinput -v 0
# the database cache's table (CACHES): the login throttles' counts, shared by every web worker
"$VENV/bin/python" manage.py createcachetable
# The admin's, Swagger UI's and ReDoc's files, hashed and compressed, into STATIC_ROOT
# (var/static), where the web process (WhiteNoise) serves them from.
say "collecting static files"
"$VENV/bin/python" manage.py collectstatic --noinput -v 0
say "declaring the RabbitMQ topology"
"$VENV/bin/python" manage.py setup_broker -v 0 | tail -n 1
