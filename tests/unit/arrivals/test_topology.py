"""The composition root: every module it names exists, and nothing else names one."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from arrivals import engine_client, topology
from shared.runtime_settings import ScaleSettings
from shared.settings import PROJECT_ROOT, Settings

PRODUCT = ("arrivals", "automations", "producer", "consumer", "shared")
LOWER_LAYERS = ("automations", "producer", "consumer", "shared")


def product_files(packages: tuple[str, ...]) -> list[Path]:
    return sorted(path for package in packages for path in (PROJECT_ROOT / package).glob("*.py"))


def module_name(path: Path) -> str:
    return f"{path.parent.name}.{path.stem}"


@pytest.mark.parametrize("module", topology.PRELOAD)
def test_every_preloaded_module_imports(module: str) -> None:
    importlib.import_module(module)


def test_the_warm_engine_preloads_every_deployments_flow_module() -> None:
    for entrypoint in topology.ENTRYPOINTS.values():
        assert entrypoint.partition(":")[0] in topology.PRELOAD
    assert topology.PRELOAD[0] == topology.COLD_ENGINE


def test_every_deployment_entrypoint_is_the_flow_its_name_says(settings: Settings) -> None:
    from prefect import Flow

    specs = topology.deployment_specs(settings)
    assert {spec.full_name for spec in specs} == set(topology.ENTRYPOINTS)
    for spec in specs:
        module, _, attribute = spec.entrypoint.partition(":")
        flow = getattr(importlib.import_module(module), attribute)
        assert isinstance(flow, Flow), spec.entrypoint
        assert spec.full_name == f"{flow.name}/{spec.name}"


@pytest.mark.parametrize(
    "service", [s for s in topology.SERVICES if s.module], ids=lambda service: service.name
)
def test_every_service_module_exists_and_has_a_main(service: topology.Service) -> None:
    module = importlib.import_module(service.module)
    assert callable(getattr(module, "main", None)), f"{service.module} has no main()"


def test_the_automations_name_only_declared_deployments(settings: Settings) -> None:
    declared = {spec.full_name for spec in topology.deployment_specs(settings)}
    definitions = topology.automations_declared()
    names = ["retrain-on-arrival", "sensor-silent", "crash-silent-runs"]
    assert [d["name"] for d in definitions] == names
    for definition in definitions:
        runs = [a for a in definition["actions"] if a["type"] == "run-deployment"]
        if runs:
            assert definition["deployment"] in declared, definition["name"]


def test_every_automation_file_is_declared() -> None:
    shipped = sorted(path.name for path in topology.AUTOMATIONS_DIR.glob("*.yaml"))
    assert shipped == sorted(topology.AUTOMATION_FILES), "a YAML file `up` would never apply"


def test_the_services_of_each_profile_in_start_order(settings: Settings) -> None:
    names = ["prefect", "mlflow", "engine", "worker", "sensor", "serve"]
    assert topology.service_names(settings) == names
    no_serve = settings.model_copy(
        update={"serve": settings.serve.model_copy(update={"enabled": False})}
    )
    assert topology.service_names(no_serve) == names[:-1]
    scaled = no_serve.model_copy(
        update={
            "profile": "scale",
            "scale": ScaleSettings(api_replicas=2, workers=3),
            "services": settings.services.model_copy(update={"warm_start": False}),
        }
    )
    assert topology.service_names(scaled) == [
        "prefect",
        "prefect-2",
        "prefect-services",
        "mlflow",
        "worker",
        "worker-2",
        "worker-3",
        "sensor",
    ]


@pytest.mark.parametrize(
    ("name", "service"),
    [
        ("prefect", topology.PREFECT_SERVER),
        ("prefect-2", topology.PREFECT_SERVER),
        ("prefect-services", topology.PREFECT_SERVICES),
        ("worker-3", topology.WORKER),
        ("engine", topology.WARM_ENGINE),
    ],
)
def test_a_process_name_belongs_to_its_service(name: str, service: topology.Service) -> None:
    assert topology.service_of(name) is service


@pytest.mark.parametrize("name", ["workers", "worker-x", "prefect-", "redis"])
def test_a_name_of_no_service_is_refused(name: str) -> None:
    with pytest.raises(KeyError):
        topology.service_of(name)


def test_the_engine_client_falls_back_to_the_declared_cold_engine() -> None:
    assert engine_client.COLD_ENGINE == topology.COLD_ENGINE


def test_lower_layers_never_import_arrivals() -> None:
    offenders = []
    for path in product_files(LOWER_LAYERS):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "arrivals"]
    assert offenders == []


def test_only_the_root_names_our_modules_by_string() -> None:
    """A module named by string elsewhere is a second place to change when it moves.

    Logger names are not module references, and a module may start itself by name."""
    modules = {module_name(path) for path in product_files(PRODUCT) if path.stem != "__init__"}
    found = []
    for path in product_files(PRODUCT):
        if path == Path(topology.__file__):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        logger_names = {
            id(argument)
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "getLogger"
            for argument in node.args
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Constant) or not isinstance(node.value, str):
                continue
            named = node.value.partition(":")[0]
            if named in modules and named != module_name(path) and id(node) not in logger_names:
                found.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno} {node.value}")
    assert found == []
