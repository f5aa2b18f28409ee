#!/usr/bin/env bash
# The labeling page's browser test drives Debian's chromium through Playwright (Playwright's own
# browser download needs the internet). Installs it when missing and possible (root, or sudo
# without a password); otherwise fails with the one command that fixes it.
set -euo pipefail
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 && exit 0
if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo"; else
    echo "the browser test needs chromium, which is missing: run \`sudo apt-get install chromium\` and then \`make test\` again" >&2
    exit 1
fi
echo "installing Debian's chromium for the browser test (apt-get) ..." >&2
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null; }; then
    echo "could not install chromium with apt-get; install it (\`sudo apt-get install chromium\`) and run \`make test\` again" >&2
    exit 1
fi
