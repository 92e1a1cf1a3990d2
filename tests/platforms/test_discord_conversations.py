"""Discord end to end: which conversation a question goes on (a private thread's, a private /ask's)
and what /reset ends (the real Bridge and discord.py client against the fakes)."""

from __future__ import annotations

from tests.platforms.discord_support import SOURCE, SOURCES_BLOCK, Setup


async def test_reset_command_starts_a_new_session(setup: Setup) -> None:
    fake = setup.discord
    for word in ("one", "two", "three"):
        setup.chat.enqueue(tokens=[f"Answer {word}."])
    async with setup.bridge():
        await fake.mention(setup.general, setup.alice, "first")
        await setup.final(setup.general, "Answer one.")
        await fake.mention(setup.general, setup.alice, "second")
        await setup.final(setup.general, "Answer two.")
        iid = await fake.invoke(setup.general, setup.alice, "reset")
        await setup.command_answered(iid)
        await fake.mention(setup.general, setup.alice, "third")
        await setup.final(setup.general, "Answer three.")
    original = fake.messages[fake.interactions[iid]["original"]]
    assert original["content"] == "Started a new conversation."
    assert original["flags"] & 64  # only the asker sees it
    one, two, three = setup.sessions()
    assert one and one == two
    assert three and three != one


async def test_a_private_threads_conversation_is_not_its_channels(setup: Setup) -> None:
    # Under `session: channel`, a private thread's questions and answers went into its
    # public channel's conversation: the next public answer drew on them.
    fake = setup.discord
    for word in ("private", "public"):
        setup.chat.enqueue(tokens=[f"Answer {word}."])
    async with setup.bridge():
        private = await fake.add_thread(setup.general, "hr", private=True)
        await fake.mention(private, setup.alice, "my salary is 95k, am I underpaid?")
        await setup.final(private, "Answer private.")
        await fake.mention(setup.general, setup.bob, "what was the previous question?")
        await setup.final(setup.general, "Answer public.")
    in_private, in_public = setup.sessions()
    assert in_private and in_public and in_private != in_public


async def test_a_private_ask_is_a_conversation_of_the_askers_own(setup: Setup) -> None:
    # With ask_ephemeral, an /ask answer only the asker saw went into the channel's
    # conversation, for the next public answer to draw on.
    setup.discord_extra = "ask_ephemeral: true"
    fake = setup.discord
    for word in ("private", "public", "again"):
        setup.chat.enqueue(tokens=[f"Answer {word}."])

    async with setup.bridge():
        await setup.slash_ask("how do I report my manager?")
        await fake.mention(setup.general, setup.bob, "what was asked before me?")
        await setup.final(setup.general, "Answer public.")
        await setup.slash_ask("and then?")
    private, public, again = setup.sessions()
    assert private and public and private != public
    assert again == private  # the asker's own conversation goes on


async def test_with_private_asks_a_reset_resets_the_places_and_the_askers_own(
    setup: Setup,
) -> None:
    # /reset reset only the asker's private /ask conversation: the channel's went on.
    setup.discord_extra = "ask_ephemeral: true"
    fake = setup.discord
    for n in range(4):
        setup.chat.enqueue(tokens=[f"Answer {n}."])

    async with setup.bridge():
        await fake.mention(setup.general, setup.bob, "in public")
        await setup.final(setup.general, "Answer 0.")
        await setup.slash_ask("in private")
        iid = await fake.invoke(setup.general, setup.alice, "reset")
        await setup.command_answered(iid)
        await fake.mention(setup.general, setup.bob, "in public again")
        await setup.final(setup.general, "Answer 2.")
        await setup.slash_ask("in private again")
    public, private, public_again, private_again = setup.sessions()
    assert len({public, private, public_again, private_again}) == 4


async def test_a_reset_while_a_private_answer_streams_waits_for_it_and_holds(
    setup: Setup,
) -> None:
    # The reset went first, mid-answer; the answer's end then kept its session
    # again: the next /ask went on in the conversation "reset" had ended.
    setup.discord_extra = "ask_ephemeral: true"
    fake = setup.discord
    setup.chat.enqueue(tokens=[f"w{n} " for n in range(30)] + ["end."], token_delay=0.03)
    setup.chat.enqueue(tokens=["Again."])
    async with setup.bridge():
        iid = await fake.invoke(setup.general, setup.alice, "ask", {"question": "in private"})
        await fake.wait_until(  # the answer is streaming
            lambda: (
                "w2"
                in (fake.messages.get(fake.interactions[iid]["original"] or "") or {}).get(
                    "content", ""
                )
            )
        )
        rid = await fake.invoke(setup.general, setup.alice, "reset")
        await setup.command_answered(rid)
        await setup.command_answered(iid, "end.")
        await setup.slash_ask("in private again")
    first, again = setup.sessions()
    assert first and again and first != again


async def test_with_private_asks_a_reset_in_a_dm_resets_the_dm(setup: Setup) -> None:
    # A DM's audience is the asker already: /reset there said it reset, and the DM's
    # conversation went on.
    setup.discord_extra = "ask_ephemeral: true"
    fake = setup.discord
    for word in ("one", "two"):
        setup.chat.enqueue(tokens=[f"Answer {word}."])
    dm = fake.dm_channel(setup.alice)
    async with setup.bridge():
        await fake.dm(setup.alice, "first")
        await setup.final(dm, "Answer one.")
        iid = await fake.invoke(dm, setup.alice, "reset")
        await setup.command_answered(iid)
        await fake.dm(setup.alice, "second")
        await setup.final(dm, "Answer two.")
    one, two = setup.sessions()
    assert one and two and one != two


async def test_reset_in_a_bot_opened_thread_keeps_answering_it_without_a_mention(
    setup: Setup,
) -> None:
    fake = setup.discord
    setup.chat.enqueue(tokens=["First ", "answer."], sources=[SOURCE])
    setup.chat.enqueue(tokens=["Second answer."])
    async with setup.bridge():
        question = await fake.mention(setup.help, setup.bob, "How long is the bridge?")
        thread_id = question["id"]
        await setup.final(thread_id, SOURCES_BLOCK)
        iid = await fake.invoke(thread_id, setup.bob, "reset")
        await setup.command_answered(iid)
        await fake.say(thread_id, setup.bob, "And how wide?")  # no mention, as before
        await setup.final(thread_id, "Second answer.")
    original = fake.messages[fake.interactions[iid]["original"]]
    assert original["content"] == "Started a new conversation."
    first, second = setup.sessions()
    assert first and second and first != second
    assert setup.chat.requests[1].json["message"] == "And how wide?"
