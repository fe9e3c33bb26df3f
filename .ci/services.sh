# Source me: installs (when missing) and starts PostgreSQL and Redis from
# Debian's packages on loopback, then exports DATABASE_URL and REDIS_URL.
set -euo pipefail

SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "Installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

SERVICES_DIR="${MAMI_SERVICES_DIR:-/tmp/mami-ci-services}"
PG_PORT="${MAMI_PG_PORT:-55432}"
REDIS_PORT="${MAMI_REDIS_PORT:-56379}"
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi
}
mkdir -p "$SERVICES_DIR"

# Our own throwaway cluster, owned by the postgres user, so nothing on the
# machine's default cluster is touched.
if [ ! -f "$SERVICES_DIR/pg/PG_VERSION" ]; then
  rm -rf "$SERVICES_DIR/pg"
  install -d -o postgres -g postgres "$SERVICES_DIR/pg"
  as_postgres "$PG_BIN/initdb" -D "$SERVICES_DIR/pg" -A trust -U postgres >/dev/null
fi
chown postgres:postgres "$SERVICES_DIR" 2>/dev/null || true
if ! as_postgres "$PG_BIN/pg_ctl" -D "$SERVICES_DIR/pg" status >/dev/null 2>&1; then
  as_postgres "$PG_BIN/pg_ctl" -D "$SERVICES_DIR/pg" -l "$SERVICES_DIR/pg.log" -w \
    -o "-p $PG_PORT -k $SERVICES_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
fi
psql_pg() { as_postgres psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qtA "$@"; }
if [ "$(psql_pg -c "SELECT 1 FROM pg_roles WHERE rolname='mami'")" != 1 ]; then
  psql_pg -c "CREATE ROLE mami LOGIN CREATEDB PASSWORD 'mami'"
fi
if [ "$(psql_pg -c "SELECT 1 FROM pg_database WHERE datname='mami'")" != 1 ]; then
  psql_pg -c "CREATE DATABASE mami OWNER mami"
fi

if ! redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize yes --logfile "$SERVICES_DIR/redis.log" --dir "$SERVICES_DIR"
  for _ in $(seq 1 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

export DATABASE_URL="postgres://mami:mami@127.0.0.1:$PG_PORT/mami"
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
echo "PostgreSQL on $DATABASE_URL, Redis on $REDIS_URL"
set +u
