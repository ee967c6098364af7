"""The source roots must not shadow the standard library (platform/ holds attention_tuner, not `platform`)."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_platform_module_is_still_the_standard_library():
    code = (
        "import attention_tuner, memory_tasks, platform; "
        "assert platform.system(), 'empty'; "
        "assert 'attention_tuner' not in platform.__file__; print(platform.system())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()


def test_source_roots_are_not_packages():
    assert not (ROOT / "platform" / "__init__.py").exists()
    assert not (ROOT / "tasks" / "__init__.py").exists()
    assert (ROOT / "platform" / "attention_tuner" / "__init__.py").exists()
    assert (ROOT / "tasks" / "memory_tasks" / "__init__.py").exists()
