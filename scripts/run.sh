#!/usr/bin/env bash
# Set up and run everything on a fresh Debian (bookworm) machine:
# ejabberd + erlang-dev (apt, if root), npm ci, the Erlang shim, the built sidecar
# (dist/, `npm run build`) and a private ejabberd node with mod_consult and the demo accounts.
# Stays in the foreground as a supervisor: a sidecar that dies is restarted with
# backoff (1 s doubling to 30 s, back to 1 s after a run of 60 s) while ejabberd keeps
# serving (the shim applies its failure policy meanwhile); an ejabberd node that dies is
# logged and started again the same way (run.sh stops if it does not come up). Ctrl-C /
# SIGTERM stops both.
# Admin token: the example config's placeholder admin.token is replaced with a random one made
# on the first run, kept in $CONSULT_RUN_DIR/admin-token (mode 600; consultctl reads it there).
# ejabberd's HTTP listener serves /ws only: no HTTP admin API (accounts are made with ejabberdctl).
#
#   scripts/run.sh [--fresh]      --fresh: delete the ejabberd and PGlite data directories first
#
# Env (paths relative to the current directory):
#   CONSULT_RUN_DIR     .run (in the checkout)   everything this instance writes: run.pid, sidecar.pid,
#                                                logs, consult.json, admin-token, shim-token, pglite/, ejabberd/
#   CONSULT_CONFIG      config/consult.example.json   sidecar config, JSON or YAML (shops, agents, admin token)
#   CONSULT_STORE       the config's store; a relative pglite: path becomes pglite:$CONSULT_RUN_DIR/pglite
#   CONSULT_ADMIN_TOKEN the config's admin.token, else one made on the first run   admin API token
#   SIDECAR_PORT        $CONSULT_GRPC_PORT, else 50051   sidecar gRPC (the shim connects here)
#   SIDECAR_ADMIN_PORT  $CONSULT_ADMIN_PORT, else the config's admin.port (8088 in the example)   admin HTTP API and /metrics
#   CONSULT_ADMIN_HOST  the config's admin.host   where the admin API listens
#   XMPP_PORT           5222    ejabberd c2s
#   XMPP_DOMAIN         localhost
#   EJABBERD_HTTP_PORT  a free port   ejabberd HTTP listener: /ws (XMPP over WebSocket) only
#   VISITOR_DOMAIN      visitors.$XMPP_DOMAIN   vhost of web visitors (in-band registration, may message shops only)
#   WEB_PORT            8080    static server: demo shop page (widget), agent console (dist-web/)
#   EJABBERD_DIST_PORT  a free port   Erlang distribution (ejabberdctl talks to the node over it; no epmd)
#   EJABBERD_DIR        $CONSULT_RUN_DIR/ejabberd   ejabberd config, logs and Mnesia spool
# These go into $CONSULT_RUN_DIR/consult.json, the one config the sidecar (started without them in its
# environment), consultctl and the ejabberd set-up read; CONSULT_LOG_LEVEL and CONSULT_SIDECAR_ID reach the
# sidecar as they are (docs/configuration.md). CONSULT_GRPC_HOST is not used:
# the shim connects to 127.0.0.1.
# All listeners are on 127.0.0.1. Data directories are kept between runs; the ejabberd
# node name is stored in $EJABBERD_DIR/node-name and reused (Mnesia is bound to it).
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
FRESH=0
for arg in "$@"; do
  case $arg in
    --fresh) FRESH=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done

abspath() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac; }
# User-given paths are relative to where run.sh was called from.
[ -n "${CONSULT_RUN_DIR:-}" ] && CONSULT_RUN_DIR=$(abspath "$CONSULT_RUN_DIR")
[ -n "${CONSULT_CONFIG:-}" ] && CONSULT_CONFIG=$(abspath "$CONSULT_CONFIG")
[ -n "${EJABBERD_DIR:-}" ] && EJABBERD_DIR=$(abspath "$EJABBERD_DIR")
cd "$(dirname "$0")/.."
ROOT=$PWD

RUN_DIR=${CONSULT_RUN_DIR:-$ROOT/.run}
CONFIG=${CONSULT_CONFIG:-$ROOT/config/consult.example.json}
SIDECAR_PORT=${SIDECAR_PORT:-${CONSULT_GRPC_PORT:-50051}}
SIDECAR_ADMIN_PORT=${SIDECAR_ADMIN_PORT:-${CONSULT_ADMIN_PORT:-}}
XMPP_PORT=${XMPP_PORT:-5222}
XMPP_DOMAIN=${XMPP_DOMAIN:-localhost}
EJABBERD_HTTP_PORT=${EJABBERD_HTTP_PORT:-}
EJABBERD_DIST_PORT=${EJABBERD_DIST_PORT:-}
EJABBERD_DIR=${EJABBERD_DIR:-$RUN_DIR/ejabberd}
VISITOR_DOMAIN=${VISITOR_DOMAIN:-visitors.$XMPP_DOMAIN}
WEB_PORT=${WEB_PORT:-8080}

for v in SIDECAR_PORT XMPP_PORT WEB_PORT ${SIDECAR_ADMIN_PORT:+SIDECAR_ADMIN_PORT} ${EJABBERD_HTTP_PORT:+EJABBERD_HTTP_PORT} ${EJABBERD_DIST_PORT:+EJABBERD_DIST_PORT}; do
  if ! [[ ${!v} =~ ^[0-9]+$ ]] || [ "${!v}" -lt 1 ] || [ "${!v}" -gt 65535 ]; then
    echo "run.sh: $v=${!v} is not a port" >&2; exit 2
  fi
done
[ -f "$CONFIG" ] || { echo "run.sh: config $CONFIG not found (CONSULT_CONFIG)" >&2; exit 2; }

say() { echo "==> [$(date '+%F %T')] $*"; [ -z "${RUN_LOG:-}" ] || echo "[$(date '+%F %T')] $*" >>"$RUN_LOG"; }

# 1. Node.js: package.json wants >= 20 (engines; @xmpp/client 0.14 for the tests).
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  {
    echo "Node.js >= 20 is required; found $(node --version 2>/dev/null || echo 'no node')."
    echo "Debian bookworm's own nodejs package is 18.x (apt-cache policy nodejs). Install Node.js 20 or newer, e.g.:"
    echo "  NodeSource (https://github.com/nodesource/distributions), as root:"
    echo "    curl -fsSL https://deb.nodesource.com/setup_20.x | bash - && apt-get install -y nodejs"
    echo "  or nvm (https://github.com/nvm-sh/nvm): nvm install 20"
    echo "then run scripts/run.sh again."
  } >&2
  exit 1
fi

# 2. System packages (only if we can be root).
export PATH="$PATH:/usr/sbin:/sbin"
if ! command -v ejabberdctl >/dev/null || ! command -v erlc >/dev/null; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi
  fi
  if [ "$SUDO" = none ]; then
    echo "ejabberd/erlang-dev missing and not root: install them with 'apt-get install ejabberd erlang-dev'" >&2
    exit 1
  fi
  say "apt-get install ejabberd erlang-dev"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y ejabberd erlang-dev
  # The package starts a system ejabberd on 5222 where possible; we run our own.
  say "stopping the system ejabberd service (we run a private node)"
  $SUDO systemctl stop ejabberd 2>/dev/null || $SUDO service ejabberd stop 2>/dev/null || true
fi

# 3. One supervisor per run directory.
mkdir -p "$RUN_DIR"
exec 9>"$RUN_DIR/run.lock"
if ! flock -n 9; then
  echo "run.sh: another run.sh uses $RUN_DIR (pid $(cat "$RUN_DIR/run.pid" 2>/dev/null || echo '?')); stop it with CONSULT_RUN_DIR=$RUN_DIR scripts/stop.sh, or set another CONSULT_RUN_DIR and ports" >&2
  exit 1
fi
RUN_LOG=$RUN_DIR/run.log
echo $$ >"$RUN_DIR/run.pid"
echo "$EJABBERD_DIR" >"$RUN_DIR/ejabberd.dir"   # for scripts/stop.sh

# 4. Node dependencies, the shim, the sidecar build.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "npm ci"; npm ci 9>&-
fi
say "make -C erlang-shim"
make -C erlang-shim 9>&-
if [ ! -f dist/main.js ] || [ -n "$(find src package.json tsconfig.json tsconfig.build.json -newer dist/main.js -print -quit)" ]; then
  say "npm run build (dist/ is missing or older than src/)"; npm run build 9>&-
fi
if [ ! -f dist-web/widget.js ] || [ -n "$(find web scripts/build-web.mjs -newer dist-web/widget.js -print -quit)" ]; then
  say "npm run build:web (dist-web/ is missing or older than web/)"; npm run build:web 9>&-
fi
TSX=(node --import tsx)   # scripts/*.ts; the sidecar itself runs as built JavaScript

# 5. The link's credential: one token per run directory, for the ejabberd node of this run directory (its name is
#    kept in $EJABBERD_DIR/node-name), so the sidecar serves that node's shim and nobody else (docs/configuration.md, "Securing the link").
TOKEN_FILE=$RUN_DIR/shim-token
[ -s "$TOKEN_FILE" ] || (umask 077; node -e "console.log(require('node:crypto').randomBytes(24).toString('hex'))" >"$TOKEN_FILE")
if [ -s "$EJABBERD_DIR/node-name" ]; then NODE_NAME=$(cat "$EJABBERD_DIR/node-name")
else NODE_NAME="consult_$(node -e "console.log(require('node:crypto').randomBytes(3).toString('hex'))")@localhost"; fi

# 6. The sidecar's config for this instance: $RUN_DIR/consult.json with the ports, store and credentials above.
#    The example's placeholder admin token (which the sidecar refuses) becomes $RUN_DIR/admin-token, made once;
#    a config with a token of its own keeps it, and the file then holds that one (for consultctl).
EFFECTIVE=$RUN_DIR/consult.json
ADMIN_TOKEN_FILE=$RUN_DIR/admin-token
mapfile -t derived < <(CONSULT_ADMIN_TOKEN=${CONSULT_ADMIN_TOKEN:-} CONSULT_ADMIN_HOST=${CONSULT_ADMIN_HOST:-} node - "$CONFIG" "$EFFECTIVE" "$SIDECAR_PORT" "${SIDECAR_ADMIN_PORT:-}" "${CONSULT_STORE:-}" "$RUN_DIR" "$NODE_NAME" "$TOKEN_FILE" "$ADMIN_TOKEN_FILE" <<'EOF'
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const [src, out, grpcPort, adminPort, store, runDir, node, tokenFile, adminTokenFile] = process.argv.slice(2);
const text = fs.readFileSync(src, 'utf8');
const cfg = /\.ya?ml$/i.test(src) ? require('yaml').parse(text) : JSON.parse(text);   // as the sidecar reads it
if (process.env.CONSULT_ADMIN_TOKEN) cfg.admin = { ...cfg.admin, token: process.env.CONSULT_ADMIN_TOKEN };
if (process.env.CONSULT_ADMIN_HOST) cfg.admin = { ...cfg.admin, host: process.env.CONSULT_ADMIN_HOST };
const token = fs.readFileSync(tokenFile, 'utf8').trim();
const writeSecret = (file, text) => {   // mode 600 from its creation
  fs.rmSync(file, { force: true });
  fs.writeFileSync(file, text + '\n', { mode: 0o600, flag: 'wx' });
};
let adminToken = '';   // where the admin token comes from, for the log
if (cfg.admin?.token === 'change-me-admin-token') {
  let kept = '';
  try { kept = fs.readFileSync(adminTokenFile, 'utf8').trim(); } catch {}
  if (kept.length >= 16) adminToken = 'kept';
  else {
    kept = crypto.randomBytes(24).toString('hex');
    writeSecret(adminTokenFile, kept);
    adminToken = 'made';
  }
  cfg.admin = { ...cfg.admin, token: kept };
} else if (typeof cfg.admin?.token === 'string') {
  writeSecret(adminTokenFile, cfg.admin.token);
  adminToken = process.env.CONSULT_ADMIN_TOKEN ? 'env' : 'config';
}
const shims = (cfg.grpc?.shims ?? []).filter((s) => s.node !== node);
cfg.grpc = { ...cfg.grpc, host: '127.0.0.1', port: Number(grpcPort), shims: [...shims, { node, token }] };
if (adminPort) cfg.admin = { ...cfg.admin, port: Number(adminPort) };
if (store) cfg.store = store;
else if (/^pglite:/.test(cfg.store ?? '') && !path.isAbsolute(cfg.store.slice(7))) cfg.store = `pglite:${path.join(runDir, 'pglite')}`;
fs.writeFileSync(out, JSON.stringify(cfg, null, 2) + '\n', { mode: 0o600 });
const s = cfg.store ?? 'memory:';
console.log(s.replace(/\/\/[^@/]*@/, '//***@'));                        // store, for the log
console.log(s.startsWith('pglite:') ? path.resolve(s.slice(7)) : '');   // its directory
console.log(cfg.admin?.token ? String(cfg.admin.port ?? 8088) : '');     // admin port, if the API starts
console.log((cfg.shops ?? []).map((s) => s.jid).join(' '));              // shops, for the web pages
console.log(adminToken);                                                 // made, kept, config or ''
EOF
)
STORE_SHOWN=${derived[0]}; PGLITE_DIR=${derived[1]}; ADMIN_PORT=${derived[2]}; SHOPS=${derived[3]:-}; ADMIN_TOKEN_FROM=${derived[4]:-}

# Leftovers of an earlier run.sh on this run dir that was killed (we hold its lock now).
ejabberd_down() { "${TSX[@]}" scripts/ejabberd-up.ts down --dir "$EJABBERD_DIR" 9>&- || true; }
stop_group() {   # $1: a sidecar started by run.sh with setsid (its pid is its process group)
  local pid=$1
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
}
if [ -f "$RUN_DIR/sidecar.pid" ]; then
  old=$(cat "$RUN_DIR/sidecar.pid")
  if [ -n "$old" ] && tr '\0' ' ' <"/proc/$old/cmdline" 2>/dev/null | grep -qF -- "--config $EFFECTIVE"; then
    say "stopping the sidecar (pid $old) left by an earlier run"; stop_group "$old"
  fi
  rm -f "$RUN_DIR/sidecar.pid"
fi

# 7. --fresh: delete the data directories, and only these, only when asked.
wipe() {   # $1 what, $2 dir, $3 a file that marks it as ours
  local what=$1 d=$2 mark=$3
  [ -e "$d" ] || return 0
  case $d in /|"$ROOT"|"$HOME"|"$RUN_DIR") echo "run.sh: refusing to delete $d" >&2; exit 1 ;; esac
  if [ -n "$(ls -A "$d")" ] && [ ! -e "$d/$mark" ]; then
    echo "run.sh: --fresh: $d has no $mark, so it does not look like a $what directory; not deleting it" >&2; exit 1
  fi
  say "--fresh: deleting $what data $d"
  rm -rf -- "$d"
}
ejabberd_down   # a node of this directory that survived a killed run.sh (frees its ports, unlocks its spool)
if [ "$FRESH" = 1 ]; then
  wipe ejabberd "$EJABBERD_DIR" ejabberd.yml
  if [ -n "$PGLITE_DIR" ]; then wipe PGlite "$PGLITE_DIR" PG_VERSION
  elif [ "$STORE_SHOWN" != memory: ]; then say "--fresh: the store $STORE_SHOWN is not a directory; left as it is"; fi
fi

# 8. Ports: fail early and name the variable to change.
in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
check_port() {
  if in_use "$1"; then echo "run.sh: 127.0.0.1:$1 is already in use; set $2 to another port (or stop what listens there)" >&2; exit 1; fi
}
check_port "$SIDECAR_PORT" SIDECAR_PORT
[ -z "$ADMIN_PORT" ] || check_port "$ADMIN_PORT" SIDECAR_ADMIN_PORT
check_port "$XMPP_PORT" XMPP_PORT
[ -z "$EJABBERD_HTTP_PORT" ] || check_port "$EJABBERD_HTTP_PORT" EJABBERD_HTTP_PORT
[ -z "$EJABBERD_DIST_PORT" ] || check_port "$EJABBERD_DIST_PORT" EJABBERD_DIST_PORT
check_port "$WEB_PORT" WEB_PORT
# The web pages connect to ejabberd's WebSocket, so its HTTP port is fixed here when not given.
[ -n "$EJABBERD_HTTP_PORT" ] || EJABBERD_HTTP_PORT=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')

# 9. Supervisor.
SIDECAR_LOG=$RUN_DIR/sidecar.log
SIDECAR_PID=""
SIDECAR_STARTED=0
SLEEP_PID=""
WEB_PID=""
start_sidecar() {
  # Own session and process group (setsid), so Ctrl-C reaches run.sh only and we stop the whole group.
  # The settings run.sh put into consult.json are not passed a second time (the sidecar would read them over it).
  setsid env -u CONSULT_CONFIG -u CONSULT_STORE -u CONSULT_ADMIN_TOKEN -u CONSULT_GRPC_HOST -u CONSULT_GRPC_PORT \
    -u CONSULT_ADMIN_HOST -u CONSULT_ADMIN_PORT node dist/main.js --config "$EFFECTIVE" >>"$SIDECAR_LOG" 2>&1 9>&- &
  SIDECAR_PID=$!
  SIDECAR_STARTED=$SECONDS
  echo "$SIDECAR_PID" >"$RUN_DIR/sidecar.pid"
}
cleanup() {
  trap '' INT TERM   # finish stopping even on a second Ctrl-C
  trap - EXIT
  say "stopping"
  [ -z "$SLEEP_PID" ] || kill "$SLEEP_PID" 2>/dev/null || true
  ejabberd_down
  if [ -n "$WEB_PID" ]; then stop_group "$WEB_PID"; fi
  if [ -n "$SIDECAR_PID" ]; then stop_group "$SIDECAR_PID"; fi
  rm -f "$RUN_DIR/sidecar.pid" "$RUN_DIR/run.pid"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "starting sidecar: node dist/main.js --config $EFFECTIVE (gRPC 127.0.0.1:$SIDECAR_PORT, store $STORE_SHOWN${ADMIN_PORT:+, admin http://127.0.0.1:$ADMIN_PORT}; log $SIDECAR_LOG)"
start_sidecar
for i in $(seq 600); do   # up to 60 s (a new PGlite store runs initdb first)
  if in_use "$SIDECAR_PORT"; then break; fi
  if ! kill -0 "$SIDECAR_PID" 2>/dev/null || [ "$i" -eq 600 ]; then
    echo "sidecar did not come up on 127.0.0.1:$SIDECAR_PORT; $SIDECAR_LOG:" >&2
    tail -n 30 "$SIDECAR_LOG" >&2
    exit 1
  fi
  sleep 0.1
done

start_ejabberd() {
  "${TSX[@]}" scripts/ejabberd-up.ts up --dir "$EJABBERD_DIR" --domain "$XMPP_DOMAIN" --port "$XMPP_PORT" \
    ${EJABBERD_HTTP_PORT:+--http-port "$EJABBERD_HTTP_PORT"} ${EJABBERD_DIST_PORT:+--dist-port "$EJABBERD_DIST_PORT"} \
    --sidecar-port "$SIDECAR_PORT" --ebin erlang-shim/ebin --config "$EFFECTIVE" --visitor-domain "$VISITOR_DOMAIN" \
    --node-name "$NODE_NAME" --shim-token-file "$TOKEN_FILE" 9>&-
  EJABBERD_STARTED=$SECONDS
}
# The node's beam: the pid it writes (EJABBERD_PID_PATH), checked against its node name on that pid's command line.
ejabberd_alive() {
  local pid
  pid=$(cat "$EJABBERD_DIR/ejabberd.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- " $NODE_NAME "
}
say "starting ejabberd in $EJABBERD_DIR (c2s 127.0.0.1:$XMPP_PORT, domain $XMPP_DOMAIN)"
start_ejabberd

shop_args=(); for s in $SHOPS; do shop_args+=(--shop "$s"); done
setsid "${TSX[@]}" scripts/web-server.ts --port "$WEB_PORT" --service "ws://127.0.0.1:$EJABBERD_HTTP_PORT/ws" \
  --domain "$XMPP_DOMAIN" --visitor-domain "$VISITOR_DOMAIN" "${shop_args[@]}" >>"$RUN_DIR/web.log" 2>&1 9>&- &
WEB_PID=$!
for _ in $(seq 100); do in_use "$WEB_PORT" && break; kill -0 "$WEB_PID" 2>/dev/null || break; sleep 0.1; done
if ! in_use "$WEB_PORT"; then echo "web server did not come up on 127.0.0.1:$WEB_PORT; $RUN_DIR/web.log:" >&2; tail -n 20 "$RUN_DIR/web.log" >&2; exit 1; fi
say "demo shop page (visitor widget): http://127.0.0.1:$WEB_PORT/shop.html"
say "agent console:                   http://127.0.0.1:$WEB_PORT/console.html  (sign in as test01 / secret)"

case $ADMIN_TOKEN_FROM in
  made) say "admin API token: made a new one in $ADMIN_TOKEN_FILE (mode 600; consultctl reads it from there)" ;;
  kept) say "admin API token: in $ADMIN_TOKEN_FILE (mode 600; consultctl reads it from there)" ;;
  config) say "admin API token: the config's admin.token (copied to $ADMIN_TOKEN_FILE, mode 600, for consultctl)" ;;
  env) say "admin API token: CONSULT_ADMIN_TOKEN (copied to $ADMIN_TOKEN_FILE, mode 600, for consultctl)" ;;
esac
ej_watched=0
if ejabberd_alive; then ej_watched=1
else say "warning: no ejabberd process found by $EJABBERD_DIR/ejabberd.pid: run.sh will not notice if ejabberd dies"; fi
say "running (run dir $RUN_DIR, supervisor pid $$); sidecar log: $SIDECAR_LOG; stop: Ctrl-C or CONSULT_RUN_DIR=$RUN_DIR scripts/stop.sh"
# Foreground until a signal; every second: is the sidecar still there, and ejabberd? `wait` returns early on a
# trapped signal, whose trap exits.
pause() {   # $1: seconds
  sleep "$1" 9>&- &
  SLEEP_PID=$!
  wait "$SLEEP_PID" || true
  SLEEP_PID=""
}
backoff=1
restarts=0
ej_backoff=1
ej_restarts=0
while :; do
  pause 1
  if ! kill -0 "$SIDECAR_PID" 2>/dev/null; then
    status=0
    wait "$SIDECAR_PID" 2>/dev/null || status=$?   # (2>/dev/null: no "Killed" job notice from bash; we log it below)
    ran=$((SECONDS - SIDECAR_STARTED))
    [ "$ran" -lt 60 ] || backoff=1
    restarts=$((restarts + 1))
    say "sidecar (pid $SIDECAR_PID) exited with status $status after ${ran}s; restart #$restarts in ${backoff}s (ejabberd keeps running; last log lines below)"
    tail -n 5 "$SIDECAR_LOG" | sed 's/^/    /'
    pause "$backoff"
    start_sidecar
    say "sidecar restarted (pid $SIDECAR_PID)"
    backoff=$((backoff * 2 > 30 ? 30 : backoff * 2))
  fi
  if [ "$ej_watched" = 1 ] && ! ejabberd_alive; then
    ran=$((SECONDS - EJABBERD_STARTED))
    [ "$ran" -lt 60 ] || ej_backoff=1
    ej_restarts=$((ej_restarts + 1))
    say "ejabberd ($NODE_NAME) is gone after ${ran}s; restart #$ej_restarts in ${ej_backoff}s (the sidecar keeps running; last lines of $EJABBERD_DIR/logs/ejabberd.log below)"
    tail -n 5 "$EJABBERD_DIR/logs/ejabberd.log" 2>/dev/null | sed 's/^/    /'
    pause "$ej_backoff"
    if ! start_ejabberd; then
      say "ejabberd did not start again; stopping (see $EJABBERD_DIR/logs/ejabberd.log)"
      exit 1
    fi
    say "ejabberd restarted ($NODE_NAME, c2s 127.0.0.1:$XMPP_PORT)"
    ej_backoff=$((ej_backoff * 2 > 30 ? 30 : ej_backoff * 2))
  fi
done
