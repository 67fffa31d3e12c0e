# Sourced after env.sh: throwaway PostgreSQL and Redis servers from Debian's packages, each
# in its own directory on loopback, for the tests, the cluster script and the benches.
# Nothing is installed as a system service and nothing outside the directory is touched.

missive_install_services() {
  local missing=()
  [ -x "$(missive_pg_bin)/initdb" ] || missing+=(postgresql)
  command -v redis-server >/dev/null || missing+=(redis-server)
  if [ ${#missing[@]} -gt 0 ]; then
    missive_apt_install "${missing[@]}"
    # Debian starts the packaged services; the tests run their own.
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo systemctl disable --now postgresql redis-server >/dev/null 2>&1 || true
  fi
}

# The newest PostgreSQL server binaries Debian put under /usr/lib/postgresql.
missive_pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  echo "${dir:-/usr/lib/postgresql/missing/bin}"
}

# Starts a fresh cluster in DIR listening on 127.0.0.1:PORT (trust auth, loopback only) with
# a database `missive`; prints its URL. PostgreSQL refuses to run as root, so as root the
# cluster belongs to the `postgres` user the package creates.
missive_postgres() {
  local dir=$1 port=$2 bin as=()
  bin=$(missive_pg_bin)
  mkdir -p "$dir"
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$dir"
    as=(runuser -u postgres --)
  fi
  "${as[@]}" "$bin/initdb" -D "$dir/data" -U missive -A trust --no-sync -E UTF8 >/dev/null
  "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=200 -c fsync=on" start >/dev/null
  "${as[@]}" "$bin/createdb" -h 127.0.0.1 -p "$port" -U missive missive
  echo "postgres://missive@127.0.0.1:$port/missive"
}

missive_postgres_stop() {
  local dir=$1 as=()
  [ "$(id -u)" -eq 0 ] && as=(runuser -u postgres --)
  "${as[@]}" "$(missive_pg_bin)/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
}

# Starts redis-server in DIR on 127.0.0.1:PORT (no persistence: it holds only counters that
# the store can rebuild); prints its URL.
missive_redis() {
  local dir=$1 port=$2
  mkdir -p "$dir"
  redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --save "" --appendonly no \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/log" >/dev/null
  for _ in $(seq 50); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  echo "redis://127.0.0.1:$port"
}

missive_redis_stop() {
  local dir=$1
  [ -f "$dir/redis.pid" ] && kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
}
