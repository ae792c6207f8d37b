# Shared by scripts/tour and scripts/test: make a fresh Debian machine able
# to build and test vmfabric. Installs only what is missing.

# Run as root, or through sudo when there is one.
as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else echo "error: '$*' needs root (or sudo)" >&2; return 1
    fi
}

# apt-get install the Debian packages (given as package:command pairs)
# whose command is missing.
need_packages() {
    local missing=() pair
    for pair in "$@"; do
        command -v "${pair#*:}" >/dev/null 2>&1 || missing+=("${pair%%:*}")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing ${missing[*]} ..." >&2
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# A Rust toolchain: the machine's, or rustup's stable one.
ensure_rust() {
    [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
    if ! command -v cargo >/dev/null; then
        need_packages curl:curl ca-certificates:update-ca-certificates
        curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy >&2
        . "$HOME/.cargo/env"
    fi
    need_packages build-essential:cc
}

# A running PostgreSQL with the role the tests use (password auth on
# 127.0.0.1, as Debian's default pg_hba.conf allows).
ensure_postgres() {
    need_packages postgresql:pg_ctlcluster postgresql-client:psql
    pg_lsclusters -h | while read -r version cluster _port status _rest; do
        [ "$status" = online ] || as_root pg_ctlcluster "$version" "$cluster" start
    done
    local have
    have=$(as_root runuser -u postgres -- psql -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'vmfabric'")
    if [ "$have" != 1 ]; then
        as_root runuser -u postgres -- psql -qc "CREATE ROLE vmfabric LOGIN SUPERUSER PASSWORD 'vmfabric'"
    fi
    export VMFABRIC_TEST_POSTGRES=${VMFABRIC_TEST_POSTGRES:-postgres://vmfabric:vmfabric@127.0.0.1:5432/postgres}
}
