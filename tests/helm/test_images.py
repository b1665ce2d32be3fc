"""The Dockerfiles, read (docker cannot run here): multi-stage builds from the lock, pinned base
images, a numeric non-root user, no compiler and no secret in the image that ships."""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from pathlib import Path

import pytest
import yaml

from tests.helm.conftest import CHART, REPO

pytestmark = pytest.mark.unit

IMAGES = {
    # Dockerfile: (entrypoint, the chart's values key of its image)
    "control-plane/Dockerfile": ("coyote-control-plane", "controlPlane"),
    "executor/Dockerfile": ("coyote-executor", "executor"),
    "sdk/Dockerfile": ("coyote-sdk", "botRuntime"),
}


@dataclasses.dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for key, args in self.instructions if key == keyword]


def parse(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """The global ARG defaults and the stages of a Dockerfile."""
    text = re.sub(r"\\\n", " ", path.read_text())
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest.strip(), flags=re.IGNORECASE)
            assert match, line
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m[1] or m[2]], match[1])
            stages.append(Stage(base, match[2]))
        elif keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip()
        elif stages:
            stages[-1].instructions.append((keyword, rest.strip()))
    return args, stages


@pytest.fixture(params=sorted(IMAGES), ids=lambda p: p.split("/")[0])
def dockerfile(request: pytest.FixtureRequest) -> Path:
    return REPO / request.param


def test_the_build_has_several_stages_and_ships_the_last(dockerfile: Path) -> None:
    _, stages = parse(dockerfile)

    assert len(stages) >= 2
    assert stages[-1].name == "runtime"
    names = {s.name for s in stages}
    # The runtime stage copies the environment built before it, not the sources.
    copies = stages[-1].all("COPY")
    assert copies and all(c.startswith("--from=") for c in copies)
    assert all(c.split()[0].removeprefix("--from=") in names for c in copies)


def test_base_images_are_pinned_and_python_311_slim(dockerfile: Path) -> None:
    _, stages = parse(dockerfile)
    names = {s.name for s in stages}

    for stage in stages:
        if stage.base in names:
            continue
        assert re.fullmatch(r"[\w./-]+(:[\w.-]+)?(@sha256:[0-9a-f]{64})?", stage.base)
        tag = stage.base.rsplit(":", 1)[1] if ":" in stage.base.split("/")[-1] else ""
        assert (tag and tag != "latest") or "@sha256:" in stage.base, stage.base
    assert stages[-1].base.startswith("python:3.11-slim")


def test_the_image_runs_as_a_numeric_non_root_user(dockerfile: Path) -> None:
    _, stages = parse(dockerfile)
    runtime = stages[-1]
    users = runtime.all("USER")

    assert users, "the runtime stage sets no USER"
    user, _, group = users[-1].partition(":")
    assert user.isdigit() and int(user) > 0
    assert not group or (group.isdigit() and int(group) > 0)
    # The chart runs every container as that user.
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["containerSecurityContext"]["runAsUser"] == int(user)
    # Nothing runs as root after USER.
    after = runtime.instructions[[k for k, _ in runtime.instructions].index("USER") :]
    assert "RUN" not in [k for k, _ in after]


def test_dependencies_come_from_the_lock(dockerfile: Path) -> None:
    _, stages = parse(dockerfile)
    runs = " ".join(r for s in stages for r in s.all("RUN"))

    syncs = re.findall(r"uv sync ([^&;]*)", runs)
    assert syncs
    assert all("--frozen" in s and "--no-dev" in s for s in syncs)
    assert "pip install" not in runs


def test_the_shipped_image_has_no_compiler_and_no_secret(dockerfile: Path) -> None:
    args, stages = parse(dockerfile)
    runtime = stages[-1]

    assert "build-essential" not in " ".join(runtime.all("RUN"))
    declared = list(args) + [
        re.split(r"[=\s]", e)[0] for s in stages for e in s.all("ENV") + s.all("ARG")
    ]
    env_lines = " ".join(e for s in stages for e in s.all("ENV"))
    names = declared + re.findall(r"(\w+)=", env_lines)
    assert not [n for n in names if re.search(r"SECRET|TOKEN|PASSWORD|API_KEY", n)]


def test_the_entrypoint_is_the_components_command(dockerfile: Path) -> None:
    _, stages = parse(dockerfile)
    entrypoint = stages[-1].all("ENTRYPOINT")
    command, values_key = IMAGES[str(dockerfile.relative_to(REPO))]

    assert entrypoint == [f'["{command}"]']
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    repository = values[values_key]["image"]["repository"]
    assert (
        repository.split("/")[-1]
        == {
            "coyote-control-plane": "coyote-control-plane",
            "coyote-executor": "coyote-executor",
            "coyote-sdk": "coyote-bot",
        }[command]
    )


def test_every_copied_path_exists_and_reaches_the_build_context(dockerfile: Path) -> None:
    _, stages = parse(dockerfile)
    ignored = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    for stage in stages:
        for copy in stage.all("COPY"):
            if copy.startswith("--from="):
                continue
            *sources, _ = copy.split()
            for source in sources:
                assert (REPO / source).exists(), source
                for pattern in ignored:
                    assert not fnmatch.fnmatch(source, pattern), (source, pattern)
                    assert not source.startswith(pattern.rstrip("/") + "/"), (source, pattern)


def test_the_build_context_leaves_local_state_and_secrets_out() -> None:
    ignored = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }

    assert {".git", ".coyote", "**/.venv", ".env", "tests"} <= ignored
