import httpx


async def test_note_roundtrip(client: httpx.AsyncClient, admin_token: str) -> None:
    response = await client.post(
        "/v1/sample/notes",
        json={"text": "hi", "amount": 100, "currency": "USD"},
        headers={"authorization": f"Bearer {admin_token}"},
    )
    assert response.status_code == 201, response.text
    listed = await client.get("/v1/sample/notes")
    assert [note["text"] for note in listed.json()] == ["hi"]
