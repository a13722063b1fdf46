"""The package as installed: public surface, version, and a light import."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import memoram_auth

ROOT = Path(__file__).resolve().parent.parent
#: Public names that need an extra: (name, the module the extra installs).
NEEDS_EXTRA = {"MemoramMiddleware": "aiohttp"}


def installed_public_names() -> list[str]:
    """``__all__`` less the names whose extra is not installed here."""
    return [
        name
        for name in memoram_auth.__all__
        if name not in NEEDS_EXTRA or importlib.util.find_spec(NEEDS_EXTRA[name]) is not None
    ]


def test_public_names() -> None:
    assert sorted(memoram_auth.__all__) == [
        "ConfigurationError",
        "EndpointUnavailableError",
        "KeyRejectedError",
        "MalformedResponseError",
        "MemoramAuth",
        "MemoramAuthError",
        "MemoramAuthWarning",
        "MemoramMiddleware",
        "RetryPolicy",
        "TokenRequestError",
        "__version__",
        "hookimpl",
    ]
    for name in installed_public_names():
        value = getattr(memoram_auth, name)
        if name == "__version__":
            assert isinstance(value, str)
            continue
        if name == "hookimpl":  # pluggy's marker, for our project
            assert value.project_name == "memoram_auth"
            continue
        # Each public name is the package's own object, under its own name (a lazy attribute
        # that resolved to something else, or to None, fails here).
        assert value.__module__.split(".")[0] == "memoram_auth", name
        assert value.__name__ == name


def test_every_error_derives_from_the_root() -> None:
    for name in installed_public_names():
        value = getattr(memoram_auth, name)
        if (
            isinstance(value, type)
            and issubclass(value, Exception)
            and value.__name__.endswith("Error")
        ):
            assert issubclass(value, memoram_auth.MemoramAuthError)


def test_the_version_is_set_in_one_place() -> None:
    # memoram_auth/_version.py, which the command line reads at start-up; pyproject.toml takes
    # it from there, so there is no second copy to keep in step.
    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r"^version = \"", text, re.MULTILINE) is None
    assert re.search(r'^dynamic = \["version"\]$', text, re.MULTILINE)
    attr = r'^version = \{ attr = "memoram_auth\._version\.__version__" \}$'
    assert re.search(attr, text, re.MULTILINE)
    source = ast.parse((ROOT / "memoram_auth" / "_version.py").read_text())
    (literal,) = [
        node.value.value
        for node in source.body
        if isinstance(node, ast.Assign)
        and [getattr(target, "id", None) for target in node.targets] == ["__version__"]
        and isinstance(node.value, ast.Constant)
    ]
    # The installed metadata was built from that file (setuptools reads the literal, as here).
    assert literal == memoram_auth.__version__ == importlib.metadata.version("memoram-auth")


@pytest.mark.parametrize("plugin", ["memoram-auth-keyring", "memoram-auth-redis"])
def test_each_plugin_carries_the_license_and_one_version(plugin: str) -> None:
    folder = ROOT / "plugins" / plugin
    # A copy: a plugin's sdist is built from its own folder and cannot reach the root's.
    assert (folder / "LICENSE").read_text() == (ROOT / "LICENSE").read_text()
    text = (folder / "pyproject.toml").read_text()
    assert re.search(r'^license-files = \["LICENSE"\]$', text, re.MULTILINE)
    # No __version__ in the plugin: its pyproject.toml is the one place.
    assert len(re.findall(r'^version = "[0-9][^"]*"$', text, re.MULTILINE)) == 1
    package = folder / plugin.replace("-", "_")
    assert not [p for p in package.glob("*.py") if "__version__" in p.read_text()]


def test_typed_marker_ships() -> None:
    assert (Path(memoram_auth.__file__).parent / "py.typed").exists()


def test_import_loads_no_http_library() -> None:
    code = (
        "import sys, json, memoram_auth, memoram_auth.exchange, memoram_auth.token;"
        "print(json.dumps(sorted(m for m in sys.modules"
        " if m.split('.')[0] in"
        " ('requests', 'httpx', 'urllib3', 'httpcore', 'ssl', 'http', 'aiohttp', 'yarl'))))"
    )
    loaded = json.loads(subprocess.check_output([sys.executable, "-c", code], text=True))
    assert loaded == []


def test_memoram_auth_loads_on_first_use() -> None:
    code = (
        "import sys, memoram_auth; before = 'requests' in sys.modules;"
        "from memoram_auth import MemoramAuth;"
        "print(before, 'requests' in sys.modules, 'httpx' in sys.modules)"
    )
    out = subprocess.check_output([sys.executable, "-c", code], text=True)
    assert out.split() == ["False", "True", "True"]


def test_middleware_without_aiohttp_says_which_extra() -> None:
    # sys.modules["aiohttp"] = None makes "import aiohttp" fail as if it were not installed.
    code = (
        "import sys; sys.modules['aiohttp'] = None\n"
        "try:\n    from memoram_auth import MemoramMiddleware\n"
        "except ImportError as exc:\n    print(exc)"
    )
    out = subprocess.check_output([sys.executable, "-c", code], text=True)
    assert "pip install 'memoram-auth[aiohttp]'" in out


def test_unknown_attribute_is_an_attribute_error() -> None:
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        memoram_auth.Nope  # noqa: B018


#: Every Python we support, for the floors that differ by Python (markers in pyproject.toml).
PYTHONS = ("3.9", "3.10", "3.11", "3.12", "3.13")


def _marker_env(python: str) -> dict[str, str]:
    return {"python_version": python, "python_full_version": f"{python}.0"}


def _floors(python: str) -> dict[str, str]:
    """``name: lowest version`` of every dependency and extra in pyproject.toml on one Python.

    Read with a regular expression, not tomllib, which Python 3.9 and 3.10 do not have.
    """
    from packaging.markers import Marker

    text = (ROOT / "pyproject.toml").read_text()
    floors: dict[str, str] = {}
    for name, version, marker in re.findall(
        r'"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?>=([0-9][0-9.]*)\s*(?:;\s*([^"]*))?"', text
    ):
        if "setuptools" in name:
            continue  # the build backend
        if marker and not Marker(marker).evaluate(_marker_env(python)):
            continue
        assert name.lower() not in floors, f"two floors for {name} on Python {python}"
        floors[name.lower()] = version
    return floors


def _min_pins(python: str) -> dict[str, str]:
    """``name: version`` that .ci/minimum-versions.txt pins on one Python."""
    from packaging.requirements import Requirement

    pins: dict[str, str] = {}
    for line in (ROOT / ".ci" / "minimum-versions.txt").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        requirement = Requirement(line)
        if requirement.marker and not requirement.marker.evaluate(_marker_env(python)):
            continue
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", line
        pins[requirement.name.lower()] = specifier.version
    return pins


@pytest.mark.parametrize("python", PYTHONS)
def test_the_min_environment_pins_exactly_the_declared_floors(python: str) -> None:
    pins = _min_pins(python)
    floors = _floors(python)
    assert {"requests", "httpx", "pluggy", "filelock", "platformdirs", "httpie"} <= set(floors)
    for name, floor in floors.items():
        pinned = pins.get(name, "")
        # "0.24" in pyproject is the release 0.24.0.
        assert pinned.split(".")[: len(floor.split("."))] == floor.split("."), name
        assert pinned == floor or set(pinned.split(".")[len(floor.split(".")) :]) == {"0"}, name
    tox = (ROOT / "tox.ini").read_text()
    assert re.search(r"^env_list = .*\bmin\b", tox, flags=re.MULTILINE)


def test_the_declared_floors_are_the_safe_ones() -> None:
    for python in PYTHONS:
        floors = _floors(python)
        as_tuple = {name: tuple(int(part) for part in v.split(".")) for name, v in floors.items()}
        if python != "3.9":  # 3.20.1 needs Python 3.10; see pyproject.toml
            assert as_tuple["filelock"] >= (3, 20, 1)  # O_NOFOLLOW on lock files
        assert as_tuple["requests"] >= (2, 32, 4)  # verification and .netrc leak fixes
        assert as_tuple["pluggy"] >= (1, 2)


def _pyproject() -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11: the regular expressions below suffice
        return {}
    with (ROOT / "pyproject.toml").open("rb") as handle:
        data: dict[str, Any] = tomllib.load(handle)
    return data


def test_classifiers_name_every_supported_python() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    floor = re.search(r'^requires-python = ">=3\.(\d+)"', text, re.MULTILINE)
    assert floor
    versions = [int(v) for v in re.findall(r'"Programming Language :: Python :: 3\.(\d+)"', text)]
    assert versions == list(range(int(floor.group(1)), 14))  # 3.9 ... 3.13, in order
    project = _pyproject().get("project")
    if project is not None:
        assert project["license"] == "MIT"
        assert project["license-files"] == ["LICENSE"]
        assert "urls" not in project or all(
            url.startswith("https://") for url in project["urls"].values()
        )


def test_the_license_file_is_the_declared_mit_license() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 memoram-auth developers" in text


def test_readme_links_work_outside_the_repository() -> None:
    # On the package index the README is shown without the repository around it: a relative
    # link (BENCHMARKS.md, plugins/...) or an in-page anchor there leads nowhere.
    # Docs pages are named as paths in text instead (tests/test_docs_site.py checks them).
    def targets(text: str) -> list[str]:
        return re.findall(r"\]\(([^)]*)\)", text) + re.findall(r'href="([^"]*)"', text)

    assert targets('[a](docs/x.md) <a href="#y">') == ["docs/x.md", "#y"]  # the patterns work
    text = (ROOT / "README.md").read_text()
    assert [t for t in targets(text) if not t.startswith("https://")] == []


#: The Markdown files at the top of the checkout besides the README (which goes to the package
#: index, with its own link rule above).
ROOT_DOCUMENTS = sorted(p.name for p in ROOT.glob("*.md") if p.name != "README.md")


def test_the_root_documents_ship_in_the_sdist() -> None:
    # setuptools adds the README and the licence by itself; every other document needs a line
    # in MANIFEST.in, or a packager's sdist lacks the changelog its users are pointed to.
    assert {"ARCHITECTURE.md", "BENCHMARKS.md", "CHANGELOG.md", "CONTRIBUTING.md"} <= set(
        ROOT_DOCUMENTS
    )
    manifest = (ROOT / "MANIFEST.in").read_text().splitlines()
    assert [name for name in ROOT_DOCUMENTS if f"include {name}" not in manifest] == []


def _github_anchor(heading: str) -> str:
    """The anchor GitHub (and mkdocs' default toc) gives a heading: lower case, punctuation
    dropped, spaces as hyphens."""
    kept = "".join(c for c in heading.strip().lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


@pytest.mark.parametrize("name", ROOT_DOCUMENTS)
def test_the_root_documents_link_to_what_exists(name: str) -> None:
    # These are read in the repository and in the unpacked sdist: a relative link must reach a
    # file of the checkout, an in-page link one of the document's headings.
    text = (ROOT / name).read_text()
    anchors = {_github_anchor(h) for h in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith("https://"):
            continue
        path, _, anchor = target.partition("#")
        reached = (ROOT / path).exists() if path else anchor in anchors
        if not reached:
            broken.append(target)
    assert broken == []


def test_the_changelog_has_a_section_for_this_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(r"^## \[Unreleased\]$", text, re.MULTILINE)
    assert re.search(rf"^## \[{re.escape(memoram_auth.__version__)}\] - ", text, re.MULTILINE)


def test_the_stability_policy_names_every_public_name() -> None:
    # The policy says which names are public: a name added to __all__ is added there too.
    text = (ROOT / "CHANGELOG.md").read_text()
    policy = text.split("## Versioning and stability policy", 1)[1].split("\n## ", 1)[0]
    assert [name for name in memoram_auth.__all__ if f"`{name}`" not in policy] == []
