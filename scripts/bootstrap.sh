#!/usr/bin/env bash
# Create .venv and install the core, the three first-party plugins, the example third-party plugin
# (examples/arena-adapters-vlaeval) and the test tools, editable.
# The core's [all] extra brings every adapter's server dependencies, inspect-robots (for
# tests/test_inspect_robots.py) and ray (for tests/test_ray_eval.py); [testing] brings pytest and the test peers.
# torch is installed first, pinned, so that no CUDA wheels are pulled in by a bare requirement.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet torch==2.13.0
.venv/bin/python -m pip install --quiet \
    -e ".[all,testing]" \
    -e "plugins/gr00t[testing]" \
    -e "plugins/openpi[testing]" \
    -e "plugins/openvla[server,testing]" \
    -e "examples/arena-adapters-vlaeval[testing]"
echo "bootstrap: installed into $(pwd)/.venv"
