# Sourced by the scripts: installs the Debian packages a script needs when they are missing.
#
#   ensure_debian_packages WHAT:PACKAGE ...
#
# WHAT is an absolute path that must be executable, or a command name that must be on PATH.

ensure_debian_packages() {
    local missing=() entry what package
    for entry in "$@"; do
        what="${entry%%:*}"
        package="${entry#*:}"
        case "$what" in
            /*) [ -x "$what" ] || missing+=("$package") ;;
            *) command -v "$what" >/dev/null 2>&1 || missing+=("$package") ;;
        esac
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    install_debian_packages "${missing[@]}"
}

# install_debian_packages PACKAGE ...: installs them (for packages without a command to look for).
install_debian_packages() {
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "==> installing $*"
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}
