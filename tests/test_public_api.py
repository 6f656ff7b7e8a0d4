"""The package's public surface: small, and cheap to import."""

import subprocess
import sys

import edge_pqrnn


def test_importing_the_package_does_not_load_tensorflow():
    code = "import sys, edge_pqrnn; edge_pqrnn.project(['x']); print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_stage_entry_points_resolve_even_after_their_modules_are_imported():
    import edge_pqrnn.export  # noqa: F401  (a submodule import sets edge_pqrnn.export)
    import edge_pqrnn.validate  # noqa: F401
    from edge_pqrnn.export import export
    from edge_pqrnn.validate import validate

    for name in ("train_run", "evaluate_run", "quickstart", "load_run", "Artifact", "load_dataset"):
        assert callable(getattr(edge_pqrnn, name)), name
    assert edge_pqrnn.export_artifact is export and edge_pqrnn.validate_artifact is validate
    assert set(edge_pqrnn.__all__) >= {"op_library", "project", "ProjectionSpec", "export_artifact", "Artifact"}


def test_unknown_attribute_is_an_attribute_error():
    try:
        edge_pqrnn.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
