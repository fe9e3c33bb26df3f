"""The benchmarks still load against the code as it is: every script in
bench/ imports (in a process of its own, as it runs), and the GPU gap's
phase tracer installs on the worker's trace hooks. Nothing runs CI's
benchmarks, so a rename would otherwise break them silently."""

from tests.helpers import ROOT, run_python

SCRIPTS = sorted(path.stem for path in (ROOT / "bench").glob("*.py"))


def test_every_benchmark_imports_and_the_phase_tracer_installs():
    assert "gpu_gap" in SCRIPTS
    assert "common" in SCRIPTS
    script = (
        "import importlib, sys\n"
        f"sys.path.insert(0, {str(ROOT / 'bench')!r})\n"
        f"for name in {SCRIPTS!r}:\n"
        "    importlib.import_module(name)\n"
        "import gpu_gap\n"
        "from imagejobs import tracing\n"
        "phases = gpu_gap.Phases()\n"
        "phases.install()\n"
        "tracing.tracer.mark('step')\n"
        "with tracing.tracer.span('progress poll'):\n"
        "    pass\n"
        "assert phases.marks[-1][1] == 'step', phases.marks\n"
        "assert phases.spans[-1][2] == 'progress poll', phases.spans\n"
        "print('ok')\n"
    )
    result = run_python(script, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
