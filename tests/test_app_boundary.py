"""The two apps depend one way: chat (conversations, messages, the pages
and the API that create them) sits on imagejobs (the queue, the worker,
Forge). imagejobs never imports chat, so the queue can change without
touching the chat and the other way round only through imagejobs' public
functions."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOWER, UPPER = "imagejobs", "chat"


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name | ast.Attribute)
            and getattr(node.func, "id", getattr(node.func, "attr", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.append((node.lineno, str(node.args[0].value)))
    return found


def test_the_lower_app_never_imports_the_upper_one():
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sorted((ROOT / LOWER).rglob("*.py"))
        for line, module in _imported_modules(path)
        if module == UPPER or module.startswith(f"{UPPER}.")
    ]
    assert offenders == [], f"{LOWER} must not import {UPPER}: " + "; ".join(offenders)


def test_the_check_sees_imports_inside_functions_too(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from chat.actions import check_retry\n    import chat.api\n")
    assert [module for _line, module in _imported_modules(sample)] == [
        "chat.actions",
        "chat.api",
    ]


def test_the_forge_simulator_stays_out_of_a_production_process():
    """With a real Forge and a real chat model configured, serving pages,
    writing replies and running the worker never load a simulator (the
    `simulators` app is installed for its commands only)."""
    import os
    import subprocess
    import sys

    script = (
        "import sys, django; django.setup()\n"
        "import mami.asgi, mami.urls, imagejobs.worker, imagejobs.embedded, imagejobs.admin\n"
        "import chat.reply_runner, chat.chat_model\n"
        "chat.chat_model.model_name()\n"
        "from django.core.management import load_command_class\n"
        "load_command_class('imagejobs', 'runworker')\n"
        "print(sorted(m for m in sys.modules if 'simulator' in m and m != 'simulators.apps'"
        " and m != 'simulators'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "mami.settings",
            "FORGE_URL": "http://gpu:7860",
            "CHAT_MODEL_URL": "http://llm:8080/v1",
            "CHAT_MODEL": "a-model",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
