# Shared by scripts/run and scripts/test: find Python >= 3.12 and keep the
# project's virtualenv in step with the requirements files.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

python_ok() {
  "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1
}

find_python() {
  local candidate
  # Newest first; pyenv shims on PATH may exist without being selected,
  # so every candidate is run, not just looked up.
  for candidate in python3.14 python3.13 python3.12 \
      "$HOME"/.pyenv/versions/3.14*/bin/python3 \
      "$HOME"/.pyenv/versions/3.13*/bin/python3 \
      "$HOME"/.pyenv/versions/3.12*/bin/python3 \
      /usr/local/bin/python3 /usr/bin/python3 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

# ensure_venv runtime|dev: requirements.txt, or requirements-dev.txt (which
# includes it, so installing dev satisfies both).
ensure_venv() {
  local kind="$1" python file stamp
  if [ ! -x "$VENV/bin/python" ] || ! python_ok "$VENV/bin/python"; then
    if ! python="$(find_python)"; then
      echo "mami needs Python 3.12 or newer (Django 6 requires it), and none was found." >&2
      echo "Install one (for example: pyenv install 3.13) and run this again." >&2
      exit 1
    fi
    echo "Creating the virtualenv with $python ($("$python" --version))"
    rm -rf "$VENV"
    "$python" -m venv "$VENV"
  fi
  file=requirements.txt
  [ "$kind" = dev ] && file=requirements-dev.txt
  stamp="$VENV/.installed-$kind-$(cat "$ROOT/requirements.txt" "$ROOT/$file" | sha256sum | cut -c1-16)"
  [ -f "$stamp" ] && return 0
  echo "Installing $file"
  "$VENV/bin/python" -m pip install --quiet -r "$ROOT/$file" 2>&1 | grep -v "is ignored" || true
  "$VENV/bin/python" -c "import django, channels, daphne" || { echo "Installing $file failed" >&2; exit 1; }
  rm -f "$VENV/.installed-$kind-"*
  touch "$stamp"
  if [ "$kind" = dev ]; then
    rm -f "$VENV/.installed-runtime-"*
    touch "$VENV/.installed-runtime-$(cat "$ROOT/requirements.txt" "$ROOT/requirements.txt" | sha256sum | cut -c1-16)"
  fi
}
