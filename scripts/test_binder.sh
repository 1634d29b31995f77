#!/usr/bin/env bash
# Builds the Binder environment the way mybinder.org's repo2docker builds it, then runs the quickstart in it:
#   1. a copy of the working tree's files that git tracks or would add, in a temporary folder
#      (repo2docker builds from a clone: no node_modules, no built bundle, nothing .gitignore hides);
#   2. a fresh venv without system site packages, standing in for Binder's notebook environment;
#   3. `pip install -r binder/requirements.txt` from the copy's root, as repo2docker runs it;
#   4. binder/postBuild with that venv first on the PATH, then a check that JupyterLab lists the
#      vortex-jupyter extension as enabled;
#   5. notebooks/quickstart.ipynb executed by nbclient on the venv's own kernel; any cell error fails.
# Fresh Jupyter config/data folders, models, history and packs folders, and no VORTEX_* settings from
# the caller: a Binder user starts with none. Unlike mybinder.org, pip's and npm's caches are used
# (repo2docker passes --no-cache-dir), so once they are warm this takes a few minutes.
# Usage: bash scripts/test_binder.sh        (VORTEX_BINDER_KEEP=1 keeps the temporary folder)
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
started=$SECONDS
step() { echo "== binder [$((SECONDS - started))s] $*"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/vortex-binder.XXXXXX")
if [ "${VORTEX_BINDER_KEEP:-}" = 1 ]; then
  echo "keeping $work"
else
  trap 'rm -rf "$work"' EXIT
fi

step "copying the repository (git's files, not the ignored ones) to $work/repo"
mkdir "$work/repo"
# --others: new files not yet committed belong to the tree under test (in CI, a clone, there are none);
# --ignore-failed-read: a tracked file deleted in this working tree is not on Binder either
git ls-files -z --cached --others --exclude-standard \
  | tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -xf - -C "$work/repo"
cd "$work/repo"

for name in $(compgen -e | grep '^VORTEX_' || true); do unset "$name"; done
unset PYTHONPATH JUPYTER_PATH VIRTUAL_ENV
export JUPYTER_CONFIG_DIR="$work/jupyter-config" JUPYTER_DATA_DIR="$work/jupyter-data" IPYTHONDIR="$work/ipython"
export VORTEX_MODELS_DIR="$work/models" VORTEX_HISTORY="$work/history.sqlite" VORTEX_PACKS_DIR="$work/packs"

step "a fresh venv"
"${PYTHON:-python}" -m venv "$work/venv"
export PATH="$work/venv/bin:$PATH" VIRTUAL_ENV="$work/venv"

step "pip install -r binder/requirements.txt"
# pip tries an index it cannot reach 6 times per package, with back-off: many minutes where only PyPI
# is reachable (torch then comes from a local wheel, or PyPI's build); one try each is enough
if ! python -c "import urllib.request as r; r.urlopen('https://download.pytorch.org/whl/cpu/', timeout=10)" 2>/dev/null; then
  echo "download.pytorch.org is unreachable from here: pip tries each index once (PIP_RETRIES=0)"
  export PIP_RETRIES=0
fi
# (the grep: this machine's pip config names local index folders that lack most packages)
python -m pip install -q -r binder/requirements.txt 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)

step "binder/postBuild"
./binder/postBuild

step "the JupyterLab extension is enabled"
extensions=$(jupyter labextension list 2>&1 | sed 's/\x1b\[[0-9;]*m//g')
if ! grep -Eq "vortex-jupyter v[^ ]+ enabled +OK" <<<"$extensions"; then
  echo "$extensions"
  echo "Binder's JupyterLab lacks the vortex-jupyter extension (see binder/postBuild)" >&2
  exit 1
fi

step "running notebooks/quickstart.ipynb on the venv's kernel"
python - notebooks/quickstart.ipynb <<'EOF'
import os
import re
import sys

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

path = sys.argv[1]
nb = nbformat.read(path, as_version=4)
cells = len(nb.cells)
nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.prefix)"))  # which python ran it
client = NotebookClient(nb, timeout=300, kernel_name="python3",
                        resources={"metadata": {"path": os.path.dirname(path)}})
try:
    client.execute()
except CellExecutionError as exc:
    error = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # the traceback's colours
    sys.exit(f"{path} failed on Binder: {error}")
prefix = "".join(nb.cells[-1].outputs[0]["text"]).strip()
if os.path.realpath(prefix) != os.path.realpath(sys.prefix):
    sys.exit(f"the notebook ran on a kernel of {prefix}, not of the Binder venv {sys.prefix}")
print(f"{path}: {cells} cells ran without an error on the venv's kernel")
EOF

step "OK: Binder's environment builds and runs the quickstart"
