"""Routes whose dependencies all take just the request have them awaited by the kernel
(kernel/routing.py, `ServiceRoute._request_handler`) instead of FastAPI's solver: the same
values, the same order, one call per dependency and request, errors before parameter
validation, and FastAPI's own solver again whenever the app has dependency overrides."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, Path, Request
from fastapi import routing as fastapi_routing

from paymesh.kernel.app import service_router
from paymesh.kernel.auth import Caller, require
from paymesh.kernel.errors import Forbidden
from paymesh.kernel.routing import SessionDep
from paymesh.platform import Platform
from tests.conftest import http_client
from tests.kernel.sample.app import SPEC
from tests.kernel.support import bearer

BASE = "/v1/sample/dependencies"
calls: list[str] = []


async def first(request: Request) -> str:
    calls.append("first")
    if request.headers.get("x-refuse") == "first":
        raise Forbidden(detail="first refuses")
    return "one"


async def second(request: Request) -> str:
    calls.append("second")
    return f"two:{request.url.path.rsplit('/', 1)[-1]}"


async def nested(value: Annotated[str, Depends(first)]) -> str:
    calls.append("nested")
    return f"nested:{value}"


First = Annotated[str, Depends(first)]
FirstAgain = Annotated[str, Depends(first)]
Second = Annotated[str, Depends(second)]
Admin = Annotated[Caller, Depends(require(roles=["admin"]))]
Item = Annotated[int, Path(ge=1, le=9)]

router = service_router(prefix=BASE)


@router.get("/flat/{item}")
async def flat(
    item: Item, one: First, again: FirstAgain, two: Second, caller: Admin, session: SessionDep
) -> dict[str, Any]:
    return {
        "item": item,
        "one": one,
        "again": again,
        "two": two,
        "subject": caller.subject,
        "session": session.is_active,
    }


@router.get("/with-request/{item}")
async def with_request(item: Item, request: Request, two: Second) -> dict[str, Any]:
    return {"item": item, "path": request.url.path, "two": two}


@router.get("/nested/{item}")
async def nested_route(item: Item, value: Annotated[str, Depends(nested)]) -> dict[str, Any]:
    return {"item": item, "value": value}


DEPENDENCIES_SPEC = dataclasses.replace(SPEC, routers=[*SPEC.routers, router])


@pytest.fixture
async def platform(make_platform: Callable[..., Any]) -> Platform:
    built: Platform = await make_platform(specs=[DEPENDENCIES_SPEC])
    return built


@pytest.fixture
async def client(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    calls.clear()
    async with http_client(platform) as client:
        yield client


@pytest.fixture
def admin(platform: Platform) -> dict[str, str]:
    return bearer(platform.tokens.issue("usr_admin", roles=["admin"]))


async def test_request_only_dependencies_are_awaited_once_each_in_order(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    response = await client.get(f"{BASE}/flat/3", headers=admin)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "item": 3,
        "one": "one",
        "again": "one",
        "two": "two:3",
        "subject": "usr_admin",
        "session": True,
    }
    assert calls == ["first", "second"]  # `first` under two names: called once


async def test_a_dependency_refusal_comes_before_parameter_validation(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    refused = await client.get(f"{BASE}/flat/0", headers={**admin, "x-refuse": "first"})
    assert refused.status_code == 403
    assert refused.json()["code"] == "forbidden"
    assert calls == ["first"]  # nothing after the refusing dependency ran

    anonymous = await client.get(f"{BASE}/flat/0")
    assert anonymous.status_code == 401

    invalid = await client.get(f"{BASE}/flat/0", headers=admin)
    assert invalid.status_code == 422
    assert invalid.headers["content-type"].startswith("application/problem+json")


async def test_an_endpoint_taking_the_request_still_gets_it(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{BASE}/with-request/4")
    assert response.json() == {"item": 4, "path": f"{BASE}/with-request/4", "two": "two:4"}


async def test_other_dependencies_keep_fastapis_solver(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{BASE}/nested/5")
    assert response.json() == {"item": 5, "value": "nested:one"}
    assert calls == ["first", "nested"]


async def test_dependency_overrides_are_honoured(
    platform: Platform, client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    async def replaced(request: Request) -> str:
        calls.append("replaced")
        return "replaced"

    app = platform.service_apps[SPEC.name]
    app.dependency_overrides[first] = replaced
    try:
        response = await client.get(f"{BASE}/flat/6", headers=admin)
    finally:
        app.dependency_overrides.clear()
    assert response.status_code == 200, response.text
    assert response.json()["one"] == "replaced"
    assert response.json()["again"] == "replaced"
    assert "first" not in calls

    calls.clear()
    again = await client.get(f"{BASE}/flat/6", headers=admin)
    assert again.json()["one"] == "one"
    assert calls == ["first", "second"]


async def test_fastapi_solves_only_the_parameters_of_a_flat_route(
    client: httpx.AsyncClient, admin: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    solved: list[int] = []
    original = fastapi_routing.solve_dependencies

    async def counting(**kwargs: Any) -> Any:
        solved.append(len(kwargs["dependant"].dependencies))
        return await original(**kwargs)

    monkeypatch.setattr(fastapi_routing, "solve_dependencies", counting)
    assert (await client.get(f"{BASE}/flat/7", headers=admin)).status_code == 200
    assert solved == [0]  # the five dependencies were awaited by the kernel
    solved.clear()
    assert (await client.get(f"{BASE}/nested/7")).status_code == 200
    assert solved == [1]  # FastAPI's solver, with the nested dependency
