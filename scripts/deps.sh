#!/usr/bin/env bash
# Makes sure the tools a workflow needs are here, installing Debian packages when it can.
#
#   scripts/deps.sh TOOL...      e.g. scripts/deps.sh docker haproxy prometheus
#
# `zh-font` is not a command but a Chinese font, for the browser that renders the live view
# in Chinese (without one, its screenshots show every character as a box).
#
# A tool that is still missing afterwards is an error under REQUIRE_DOCKER=1 (CI), and a
# warning otherwise: the checks that need it then skip, saying why.
set -uo pipefail

package_of() {
  case "$1" in
    haproxy) echo haproxy ;;
    zh-font) echo "fontconfig fonts-wqy-microhei" ;;
    nginx) echo nginx-light ;;
    qemu-aarch64-static) echo qemu-user-static ;;
    aarch64-linux-gnu-gcc) echo gcc-aarch64-linux-gnu ;;
    wrk) echo wrk ;;
    taskset) echo util-linux ;;
    valgrind) echo valgrind ;;
    strace) echo strace ;;
    go) echo golang-go ;;
    hey) echo hey ;;
    prometheus) echo prometheus ;;
    chromium) echo chromium ;;
    chromedriver) echo chromium-driver ;;
    docker-registry) echo docker-registry ;;
    *) echo "" ;;
  esac
}

present() {
  case "$1" in
    zh-font) fc-list :lang=zh 2>/dev/null | grep -q . ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

missing=()
for tool in "$@"; do present "$tool" || missing+=("$tool"); done
[ ${#missing[@]} -eq 0 ] && exit 0

packages=()
for tool in "${missing[@]}"; do
  pkg=$(package_of "$tool")
  # shellcheck disable=SC2206 # a tool may need several packages, space-separated
  [ -n "$pkg" ] && packages+=($pkg)
done
if [ ${#packages[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && sudo="sudo -n"
  echo "deps: installing ${packages[*]}"
  if ! { $sudo apt-get install -y --no-install-recommends "${packages[@]}" >/dev/null 2>&1 ||
         { $sudo apt-get update >/dev/null 2>&1 &&
           $sudo apt-get install -y --no-install-recommends "${packages[@]}" >/dev/null 2>&1; }; }; then
    echo "deps: could not install ${packages[*]}"
  fi
fi

still=()
for tool in "${missing[@]}"; do present "$tool" || still+=("$tool"); done
[ ${#still[@]} -eq 0 ] && exit 0
if [ "${REQUIRE_DOCKER:-0}" = 1 ]; then
  echo "deps: REQUIRED tools missing: ${still[*]}" >&2
  exit 1
fi
echo "deps: missing ${still[*]}; the checks that need them will be skipped" >&2
exit 0
