"""A request without a token is a 401 before anything else about it is judged: every operation
the OpenAPI document marks with bearer security, sent a body and a query it would refuse,
answers 401 with the contract's error body, never 422 (which would tell a stranger what the
endpoint accepts, and cost the work of validating it)."""

from __future__ import annotations

from typing import Any

BAD_BODY: dict[str, Any] = {"unexpected": True, "quantity": "many", "card_token": 1, "stock": -1,
                            "status": "paid"}
BAD_QUERY = {"limit": "0", "cursor": "x" * 600}


def _secured_operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    operations = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method == "parameters" or not isinstance(operation, dict):
                continue
            if any("bearerAuth" in scheme for scheme in operation.get("security") or []):
                operations.append((method.upper(), path, operation))
    return operations


def test_every_authenticated_operation_answers_401_before_judging_the_body(client) -> None:
    spec = client.get("/api/openapi.json").get_json()
    operations = _secured_operations(spec)
    assert len(operations) >= 20, [f"{m} {p}" for m, p, _ in operations]
    answers = {}
    for method, path, operation in operations:
        url = path.replace("{", "").replace("}", "")  # /api/tickets/{ticket_id} -> .../ticket_id
        response = client.open(url, method=method, query_string=BAD_QUERY,
                               json=BAD_BODY if method != "GET" else None)
        body = response.get_json(silent=True) or {}
        answers[f"{method} {path}"] = (response.status_code, body.get("error", {}).get("code"),
                                       "requestBody" in operation)
    wrong = {name: answer for name, answer in answers.items() if answer[0] != 401 or not answer[1]}
    assert not wrong, wrong
