# Shared by the scripts: a pinned Python venv for moto, cargo-lambda and SAM,
# and a moto server on a free loopback port.
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS_DIR=${IGC_TOOLS_DIR:-$HOME/.cache/ig-connect}
VENV=$TOOLS_DIR/venv

log() { printf '==> %s\n' "$*" >&2; }

# install_pinned VENV GROUP: makes VENV (once) and installs
# scripts/requirements-GROUP.txt into it with `pip --require-hashes` (every
# package, dependencies included, pinned with its hashes:
# scripts/pin-requirements), again only when that file changed.
install_pinned() {
  local venv=$1 group=$2 req="$ROOT/scripts/requirements-$2.txt"
  if [ ! -x "$venv/bin/python" ]; then
    log "creating $venv"
    python3 -m venv "$venv"
  fi
  local stamp="$venv/.installed-$group"
  if ! cmp -s "$req" "$stamp" 2>/dev/null; then
    log "installing the pinned $group tools ($(grep -v '^#' "$ROOT/scripts/requirements-$group.in" | paste -sd ' ')) and their pinned dependencies, hashes checked, into $venv: a minute or two the first time (and when the pins change), instant afterwards"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --require-hashes -r "$req" ||
      { log "pip could not install $req"; return 1; }
    cp "$req" "$stamp"
  fi
}

# ensure_tools test|build: the pinned tools in $VENV, on PATH.
ensure_tools() {
  install_pinned "$VENV" "$1"
  export PATH="$VENV/bin:$PATH"
}

free_port() {
  "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# start_moto [PORT]: starts moto (scripts/moto_server.py: one request at a
# time, as moto is not thread-safe) on 127.0.0.1, exports the AWS variables that
# point the SDK at it, and stops it when the calling shell exits.
start_moto() {
  local port=${1:-$(free_port)}
  MOTO_LOG=${MOTO_LOG:-$(mktemp -t moto.XXXXXX.log)}
  "$VENV/bin/python" "$ROOT/scripts/moto_server.py" -H 127.0.0.1 -p "$port" >"$MOTO_LOG" 2>&1 &
  MOTO_PID=$!
  trap 'stop_moto' EXIT
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
  export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
  export AWS_EC2_METADATA_DISABLED=true
  for _ in $(seq 1 100); do
    if "$VENV/bin/python" -c "import urllib.request,sys; urllib.request.urlopen('$AWS_ENDPOINT_URL/moto-api/', timeout=1)" 2>/dev/null; then
      log "moto is up on $AWS_ENDPOINT_URL (pid $MOTO_PID)"
      return 0
    fi
    if ! kill -0 "$MOTO_PID" 2>/dev/null; then
      cat "$MOTO_LOG" >&2
      log "moto did not start"; return 1
    fi
    sleep 0.2
  done
  log "moto did not answer in 20 s"; return 1
}

stop_moto() {
  if [ -n "${MOTO_PID:-}" ] && kill -0 "$MOTO_PID" 2>/dev/null; then
    kill "$MOTO_PID" 2>/dev/null || true
    wait "$MOTO_PID" 2>/dev/null || true
  fi
}
