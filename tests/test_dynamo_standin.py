"""torch._dynamo's stand-in (tuitrain.training.dynamo_standin): torch's compiler and ONNX export still work with
it in place, and under a torch it was not tested with it stays out of the way.

Each test runs in a fresh interpreter: in this one, other tests may have loaded torch's compiler already (and
then the stand-in is never put in place at all).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from tuitrain.training import dynamo_standin


def python(code: str) -> str:
    """Run `code` in a fresh interpreter; its stdout's last line."""
    env = {key: value for key, value in os.environ.items() if key != dynamo_standin.OPT_OUT}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=600, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


# inductor (torch.compile's default) needs a C compiler; without one, aot_eager still runs dynamo and AOTAutograd
BACKEND = "inductor" if shutil.which("cc") or shutil.which("gcc") else "aot_eager"


@pytest.mark.slow  # a real process
def test_torch_compile_gives_eager_outputs_with_the_standin_in_place():
    out = python(f"""
        import torch
        from tuitrain.training import dynamo_standin
        assert dynamo_standin.defer()
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
        torch.optim.SGD(model.parameters(), lr=0.1)  # what a Trainer builds while the stand-in answers
        assert dynamo_standin.deferred()
        x = torch.randn(5, 4)
        with torch.no_grad():
            compiled = torch.compile(model, backend="{BACKEND}")(x)
            eager = model(x)
        torch.testing.assert_close(compiled, eager)
        print(dynamo_standin.deferred(), type(torch._dynamo).__name__, compiled.shape[0])
    """)
    assert out.split() == ["False", "module", "5"]  # the real compiler ran, in the stand-in's module object


@pytest.mark.slow  # a real process
def test_onnx_export_works_with_the_standin_in_place():
    """A run trained as tuitrain trains (the Trainer puts the stand-in in place), exported as `tuitrain export`
    exports it: onnx.checker passes and ONNX Runtime agrees with PyTorch."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    out = python("""
        import tempfile
        from pathlib import Path
        from tuitrain.config import apply_overrides, load_preset
        from tuitrain.exports import formats
        from tuitrain.runs import start as session
        from tuitrain.training import dynamo_standin
        out = tempfile.mkdtemp()
        trainer, writer = session.new_run(apply_overrides(load_preset("rings"), epochs=1), out)
        trainer.run()
        writer.close()
        assert dynamo_standin.deferred()
        where, difference = formats.write_onnx(Path(trainer.run_dir), Path(out) / "model.onnx", "last")
        print(Path(where).is_file(), difference < 1e-4)
    """)
    assert out.split() == ["True", "True"]


@pytest.mark.slow  # a real process
def test_an_untested_torch_loads_its_own_compiler():
    """Under a torch version the stand-in was not tested with, defer() declines and a run trains with torch's
    own torch._dynamo, loaded as torch loads it."""
    out = python("""
        import sys, tempfile, torch
        torch.__version__ = "2.15.0"
        from tuitrain.training import dynamo_standin
        assert not dynamo_standin.defer() and "torch._dynamo" not in sys.modules
        from tuitrain.config import apply_overrides, load_preset
        from tuitrain.runs import start as session
        trainer, writer = session.new_run(apply_overrides(load_preset("rings"), epochs=1), tempfile.mkdtemp())
        trainer.run()
        writer.close()
        print(dynamo_standin.deferred(), "torch._dynamo.convert_frame" in sys.modules)
    """)
    assert out.split() == ["False", "True"]


@pytest.mark.parametrize(
    ("version", "tested"),
    [
        ("2.14.1", True),
        ("2.14.0+cpu", True),
        ("2.14.1+cu130", True),
        ("2.15.0", False),
        ("2.13.2", False),
        ("2.1.4", False),
        ("3.14.0", False),
        ("2.140.0", False),
    ],
)
def test_tested_versions(version, tested):
    assert dynamo_standin.tested(version) is tested


def test_the_installed_torch_is_a_tested_one():
    """The pin in constraints.txt and TESTED_TORCH move together: a new torch needs the tests above run on it."""
    import torch

    assert dynamo_standin.tested(str(torch.__version__)), (
        f"torch {torch.__version__} is not in dynamo_standin.TESTED_TORCH {dynamo_standin.TESTED_TORCH}: "
        "run tests/test_dynamo_standin.py under it and add it there, or training pays ~1 s for torch's compiler"
    )
