"""Refused observations are kept as dead letters, listed and replayed (real PostgreSQL)."""

from __future__ import annotations

from edgeloop.contracts.features.v1 import dead_letter_pb2 as dl


async def _count(app, sql: str) -> int:
    async with app.pool.connection() as conn:
        return (await (await conn.execute(sql)).fetchone())[0]


async def test_refused_observations_are_kept_whole_and_listed(stub, app, make_observation,
                                                              ingest_call):
    good = make_observation(0)
    no_deployment = make_observation(1)
    no_deployment.deployment = ""
    bad_jpeg = make_observation(2)
    bad_jpeg.jpeg = b"\xff\xd8 not a jpeg"
    bad_id = make_observation(3)
    bad_id.observation_id = "not-a-uuid"
    reply = await ingest_call(stub, [good, no_deployment, bad_jpeg, bad_id])

    assert reply.stored == 1
    refused = {r.observation_id: r for r in reply.rejected}
    assert set(refused) == {no_deployment.observation_id, bad_jpeg.observation_id, "not-a-uuid"}
    assert all(r.dead_letter_id > 0 for r in reply.rejected)
    assert "deployment" in refused[no_deployment.observation_id].reason

    listed = await stub.ListDeadLetters(dl.ListDeadLettersRequest())
    assert listed.total == 3
    by_id = {d.dead_letter_id: d for d in listed.dead_letters}
    letter = by_id[refused[no_deployment.observation_id].dead_letter_id]
    assert (letter.observation_id, letter.device_id, letter.deployment, letter.attempts) == (
        no_deployment.observation_id, no_deployment.device_id, "", 1)
    assert letter.size_bytes > len(no_deployment.jpeg)
    assert "deployment" in letter.reason
    only_parking = await stub.ListDeadLetters(dl.ListDeadLettersRequest(deployment="parking"))
    assert only_parking.total == 2


async def test_a_refusal_sent_again_is_one_dead_letter_with_two_attempts(stub, app,
                                                                         make_observation,
                                                                         ingest_call):
    refused = make_observation(0)
    refused.deployment = ""
    first = await ingest_call(stub, [refused])
    again = await ingest_call(stub, [refused])  # the gateway replays its spool
    assert first.rejected[0].dead_letter_id == again.rejected[0].dead_letter_id
    listed = await stub.ListDeadLetters(dl.ListDeadLettersRequest())
    assert listed.total == 1 and listed.dead_letters[0].attempts == 2


async def test_replay_stores_what_is_fixed_and_keeps_what_is_not(stub, app, make_observation,
                                                                 ingest_call):
    no_deployment = make_observation(0)
    no_deployment.deployment = ""
    bad_jpeg = make_observation(1)
    bad_jpeg.jpeg = b"\xff\xd8 still not a jpeg"
    reply = await ingest_call(stub, [no_deployment, bad_jpeg])
    assert reply.stored == 0 and len(reply.rejected) == 2

    replayed = await stub.ReplayDeadLetters(dl.ReplayDeadLettersRequest(deployment="collect"))
    assert (replayed.stored, replayed.duplicates, replayed.still_refused) == (1, 0, 1)
    bad_letter = next(r.dead_letter_id for r in reply.rejected
                      if r.observation_id == bad_jpeg.observation_id)
    assert "jpeg" in replayed.reasons[bad_letter]

    async with app.pool.connection() as conn:
        row = await (await conn.execute(
            "SELECT deployment, data_group FROM features.observations WHERE observation_id = %s",
            (no_deployment.observation_id,))).fetchone()
    assert row == ("collect", "collect")
    left = await stub.ListDeadLetters(dl.ListDeadLettersRequest())
    assert [d.dead_letter_id for d in left.dead_letters] == [bad_letter]
    assert left.dead_letters[0].attempts == 2

    again = await stub.ReplayDeadLetters(dl.ReplayDeadLettersRequest(
        dead_letter_ids=[bad_letter]))
    assert (again.stored, again.still_refused) == (0, 1)
    assert await _count(app, "SELECT count(*) FROM features.dead_letters") == 1
