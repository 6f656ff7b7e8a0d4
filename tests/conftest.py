import os
import sys

sys.path.insert(0, os.path.dirname(__file__))  # shared test helpers (hostile_texts)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402  (after the path set-up above)


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """Two tiny trained runs and their int8 artifacts (artifact_fixtures), built once."""
    import artifact_fixtures

    return artifact_fixtures.build(tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A tiny ATIS-fixture run (feature size 64, T=24, 4 epochs); tests only read it."""
    from edge_pqrnn.pipeline import train_run
    from edge_pqrnn.projection import ProjectionSpec

    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    train_run("fixture:atis", run_dir, spec=ProjectionSpec(feature_size=64, max_tokens=24),
              model_options={"bottleneck": 32, "state": 32}, train_options={"epochs": 4}, progress=False)
    return run_dir
