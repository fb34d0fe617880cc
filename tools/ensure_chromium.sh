#!/usr/bin/env bash
# Make sure headless Chromium is there for the browser tests (tests/browser), installing the Debian
# package `chromium` (and a small CJK font, so screenshots show the chapters' Chinese headings)
# with apt-get when it is missing and we are root or may sudo. `playwright install` is not used:
# it downloads browsers from a CDN, and the tests drive the system Chromium instead.
#   tools/ensure_chromium.sh        # prints the browser it found or installed
# Without a way to install it prints how to, and exits 0 (the browser tests then skip) -- except
# under CI (CI=true), where it exits 1: CI must run the browser tests.
set -uo pipefail

say() { printf '[chromium] %s\n' "$*"; }
found() {
  for c in "${LMBOOK_CHROMIUM:-}" /usr/bin/chromium "$(command -v chromium 2>/dev/null)" \
           "$(command -v chromium-browser 2>/dev/null)" "$(command -v google-chrome 2>/dev/null)"; do
    if [ -n "$c" ] && [ -x "$c" ]; then echo "$c"; return 0; fi
  done
  return 1
}
give_up() {
  say "$1"
  say "install it yourself (Debian/Ubuntu: sudo apt-get install chromium) or set LMBOOK_CHROMIUM=/path/to/chrome"
  case "${CI:-}" in true|1|yes) exit 1 ;; *) exit 0 ;; esac
}

can_install() {
  command -v apt-get >/dev/null 2>&1 || return 1
  if [ "$(id -u)" -eq 0 ]; then SUDO=(); return 0; fi
  command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && SUDO=(sudo -n)
}
export DEBIAN_FRONTEND=noninteractive
apt_install() {
  # Package lists may be missing (fresh containers) or stale: update them when a first try fails.
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 && return 0
  "${SUDO[@]}" apt-get update -qq >/dev/null 2>&1 && "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
cjk_font() {
  command -v fc-list >/dev/null 2>&1 && [ -n "$(fc-list :lang=zh 2>/dev/null)" ] && return 0
  can_install && apt_install fonts-wqy-microhei && return 0
  say "(no CJK font: Chinese headings show as boxes in the screenshots; the tests are not affected)"
}

if exe=$(found); then
  say "using $exe"
  cjk_font
  exit 0
fi
command -v apt-get >/dev/null 2>&1 || give_up "no Chromium found, and no apt-get to install it with"
can_install || give_up "no Chromium found, and installing it needs root"
say "installing the Debian package chromium (apt-get) ..."
apt_install chromium || give_up "apt-get could not install chromium"
exe=$(found) || give_up "apt-get installed chromium, but no browser binary was found"
say "installed: $exe ($("$exe" --version 2>/dev/null | head -1))"
cjk_font
