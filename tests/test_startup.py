"""Issue 15's start-up: torch's compiler loaded only on demand, and the data files read while torch imports."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import make_idx_set, write_idx

from tuitrain.config import DataConfig
from tuitrain.data import idx
from tuitrain.data.sets import read_idx
from tuitrain.errors import UsageError


def python(code: str, **env: str) -> str:
    """Run `code` in a fresh interpreter (sys.modules as a user's process has it); its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


TRAIN_AND_RESUME = """
    import sys, tempfile
    from tuitrain.training import dynamo_standin
    from tuitrain.runs import start as session
    from tuitrain.config import apply_overrides, load_preset
    out = tempfile.mkdtemp()
    for optimizer in ("adam", "momentum", "rmsprop"):
        config = apply_overrides(load_preset("rings"), epochs=2, optimizer=optimizer)
        trainer, writer = session.new_run(config, out)
        trainer.run()
        writer.close()
        again, _ = session.resume_run(trainer.run_dir, epochs=3)
        again.inspect()
        assert again.run().status == "completed"
    print(dynamo_standin.deferred(), "torch._dynamo.convert_frame" in sys.modules)
"""


@pytest.mark.slow  # a fresh interpreter: what it imports is the point
def test_training_never_runs_torchs_compiler():
    """torch.optim imports torch._dynamo (about 1 s, as long as `import torch`); eager training never needs it."""
    assert python(TRAIN_AND_RESUME).split() == ["True", "False"]
    assert python(TRAIN_AND_RESUME, TUITRAIN_EAGER_DYNAMO="1").split() == ["False", "True"]  # the way out


@pytest.mark.slow  # a fresh interpreter: what it imports is the point
def test_the_compiler_still_loads_when_asked_and_only_once():
    out = python("""
        import sys, types, torch
        from tuitrain.training import dynamo_standin
        assert dynamo_standin.defer()
        assert torch._dynamo.graph_break() is None and dynamo_standin.deferred()  # answered by the stand-in
        import torch._dynamo.exc as exc  # a submodule first: the package runs, as in a normal import
        assert not dynamo_standin.deferred()
        assert exc is torch._dynamo.exc is sys.modules["torch._dynamo.exc"]
        for name, module in list(sys.modules.items()):  # no second copy of any of its modules
            if name.startswith("torch._dynamo.") and module is not None:
                parent, _, child = name.rpartition(".")
                held = getattr(sys.modules[parent], child, None)  # (some are shadowed by a function)
                assert not isinstance(held, types.ModuleType) or held is module, name
        double = torch.compile(lambda x: x * 2 + 1, backend="eager")
        print(double(torch.ones(2)).tolist(), torch._dynamo.disable.__module__)
    """)
    assert out.split("]")[0] == "[3.0, 3.0"
    assert out.split()[-1] == "torch._dynamo.decorators"


@pytest.mark.slow  # a fresh interpreter: what it imports is the point
def test_an_attribute_loads_the_compiler_into_the_same_module():
    out = python("""
        import sys, torch
        from tuitrain.training import dynamo_standin
        dynamo_standin.defer()
        standin = sys.modules["torch._dynamo"]
        config = torch._dynamo.config  # any name but the two eager ones
        print(sys.modules["torch._dynamo"] is standin, type(standin).__name__, config.__name__)
    """)
    assert out.split() == ["True", "module", "torch._dynamo.config"]


def test_prefetched_files_read_the_same_as_read_now(tmp_path):
    folder = make_idx_set(tmp_path / "d", train=50, test=20)
    direct = {stem: read_idx(folder / f"{stem}.gz").clone() for stem in idx.IDX_FILES.values()}
    idx.prefetch(DataConfig(dataset="mnist", data_dir=str(folder)))
    assert all(path in idx._ahead for path in folder.iterdir())
    for stem, tensor in direct.items():
        assert read_idx(folder / f"{stem}.gz").equal(tensor)
    assert not any(path in idx._ahead for path in folder.iterdir())  # handed over, not kept


def test_a_file_changed_after_prefetch_is_read_again(tmp_path):
    folder = make_idx_set(tmp_path / "d", train=50, test=20)
    idx.prefetch(DataConfig(dataset="mnist", data_dir=str(folder)))
    labels = folder / "train-labels-idx1-ubyte.gz"
    idx._ahead[labels].join()
    before = labels.stat().st_mtime_ns
    write_idx(labels, bytes([7] * 50), [50], True)
    os.utime(labels, ns=(before + 10**9, before + 10**9))  # changed, even where the clock is coarse
    assert read_idx(labels).tolist() == [7] * 50


def test_a_damaged_file_prefetched_fails_when_read_with_the_same_message(tmp_path):
    folder = make_idx_set(tmp_path / "d", train=50, test=20)
    images = folder / "train-images-idx3-ubyte.gz"
    images.write_bytes(gzip.compress(bytes(100))[:12] + bytes(range(64)))
    with pytest.raises(UsageError) as direct:
        read_idx(images)
    idx.prefetch(DataConfig(dataset="mnist", data_dir=str(folder)))
    with pytest.raises(UsageError) as ahead:
        read_idx(images)
    assert str(ahead.value) == str(direct.value) and "cannot read" in str(direct.value)


def test_gunzip_reads_what_gzip_reads_including_several_members(tmp_path):
    path = tmp_path / "two.gz"
    first, second = bytes(range(256)) * 5000, os.urandom(3_000_000)
    path.write_bytes(gzip.compress(first) + gzip.compress(second))
    with idx._Gunzip(path) as handle:
        assert handle.read(4) == first[:4]
        assert handle.read(len(first) + len(second)) == first[4:] + second
        assert handle.read(10) == b""


def test_prefetch_is_harmless_for_sets_without_files(tmp_path):
    idx.prefetch(DataConfig(dataset="rings"))
    idx.prefetch(DataConfig(dataset="mnist", data_dir=str(tmp_path / "nowhere")))
    assert not any(str(path).startswith(str(tmp_path)) for path in idx._ahead)


@pytest.mark.slow  # a fresh interpreter: what it imports is the point
def test_the_data_files_module_needs_no_torch():
    """`idx` runs while torch imports, in another thread: it must not wait for torch itself."""
    assert (
        python("import sys, tuitrain.data.idx, tuitrain.runs.remote; print('torch' in sys.modules)").strip() == "False"
    )


@pytest.mark.slow  # a fresh interpreter: what it imports is the point
def test_a_new_run_reads_its_data_before_importing_torch(tmp_path):
    """`tuitrain run` starts the reads first; torch's import then overlaps them."""
    folder: Path = make_idx_set(tmp_path / "d", train=50, test=20)
    out = python(f"""
        import sys
        from tuitrain.headless import commands
        from tuitrain.data import idx
        commands.prefetch("mlp", None, {{"data_dir": {str(folder)!r}}})
        print(len(idx._ahead), 'torch' in sys.modules)
    """)
    assert out.split() == ["4", "False"]
