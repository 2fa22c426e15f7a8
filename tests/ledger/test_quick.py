import httpx


async def test_walkthrough(ledger: httpx.AsyncClient) -> None:
    r = await ledger.post("/v1/ledger/accounts", json={"id": "a", "currency": "USD"})
    assert r.status_code == 201, r.text
    r = await ledger.post("/v1/ledger/accounts", json={"id": "b", "currency": "USD", "flags": {"debits_must_not_exceed_credits": True}})
    assert r.status_code == 201, r.text
    r = await ledger.post("/v1/ledger/transfers", json={"id": "t1", "debit_account_id": "a", "credit_account_id": "b", "amount": 100, "currency": "USD"})
    assert r.status_code == 201, r.text
    r = await ledger.post("/v1/ledger/transfers", json={"id": "t2", "debit_account_id": "b", "credit_account_id": "a", "amount": 101, "currency": "USD"})
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "exceeds_credits"
    r = await ledger.get("/v1/ledger/trial-balance")
    assert r.json()["balanced"], r.text
    r = await ledger.get("/v1/ledger/accounts/b/entries")
    assert r.status_code == 200, r.text
    assert r.json()["data"][0]["balance_posted"] == 100
