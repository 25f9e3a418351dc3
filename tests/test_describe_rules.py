"""The offline rules describe backend: instruction forms, refusals, determinism, the factory."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from regionedit_jax.describe import (
    REASONS,
    DescribeError,
    Edit,
    OpenAIDescriber,
    RulesDescriber,
    UnsupportedRoleError,
    make,
)

REPO = Path(__file__).resolve().parents[1]

# One case a line: source caption | instruction | expected target caption. "#" lines are notes.
CASES_TABLE = """
# Replace / turn / transform / convert / swap / substitute.
a cat on a sofa | turn the cat into a dog | a dog on a sofa
a plate of cookies on a table | replace the cookies with candles | a plate of candles on a table
a beach under a blue sky | change the sky to a sunset | a beach under a sunset sky
an apple on a wooden table | swap the apple for an orange | an orange on a wooden table
a cat on a sofa | make the cat a tiger | a tiger on a sofa
an owl in a tree | turn the owl into a parrot | a parrot in a tree
a cat on a sofa | turn the cat into an elephant | an elephant on a sofa
two cats on a sofa | replace the cat with a dog | two dogs on a sofa
a cat on a sofa | replace the cat with puppies | puppies on a sofa
a black cat on a sofa | transform the cat into a dog | a black dog on a sofa
a cat on a sofa | substitute a dog for the cat | a dog on a sofa
a cat on a sofa | convert the cat into a robot | a robot on a sofa
a cat on a sofa | make the cat look like a lion | a lion on a sofa
a cat on a sofa | a dog instead of the cat | a dog on a sofa
a cat on a sofa | the cat should be a dog | a dog on a sofa
a cat on a sofa | cat -> dog | a dog on a sofa
a cat on a sofa | turn it into a dog | a dog on a sofa
a dog and a cat | swap the dog and the cat | a cat and a dog
# Add / put / place / insert / give.
a cat on a sofa | add a hat to the cat | a cat with a hat on a sofa
a cat on a sofa | put a hat on the cat | a cat with a hat on a sofa
a beach under a blue sky | add a bird in the sky | a beach under a blue sky with a bird
a cat on a sofa | add a lamp | a cat on a sofa with a lamp
a dog on a sofa with a ball | add a hat | a dog on a sofa with a ball and a hat
a cat on a sofa | insert fireworks | a cat on a sofa with fireworks
a cat on a sofa | place a vase on the table | a cat on a sofa with a vase on the table
a cat on a sofa | there should be a dog on the sofa | a cat on a sofa with a dog on the sofa
a man on a street | give the man a hat | a man with a hat on a street
# Remove / delete / erase / take away / get rid of.
a cat on a sofa | remove the cat | a sofa
a cat on a sofa | remove the sofa | a cat
a cat and a dog on a sofa | delete the dog | a cat on a sofa
a cat and a dog on a sofa | delete the cat | a dog on a sofa
a man holding an umbrella in the rain | erase the umbrella | a man in the rain
a plate of cookies on a table | take away the cookies | a plate on a table
a cat with a hat and a scarf | get rid of the hat | a cat with a scarf
a photo of a cat on a sofa | remove the cat | a photo of a sofa
a bird sitting on a tree branch | remove the tree | a bird sitting
a cat on a sofa | take the cat away | a sofa
# Attributes: colour, material, size, other adjectives.
a car parked on a street | make the car red | a red car parked on a street
a blue car parked on a street | make the car red | a red car parked on a street
a table in a kitchen | make the table wooden | a wooden table in a kitchen
a small dog in a park | make the dog bigger | a big dog in a park
an apple on a table | make the apple red | a red apple on a table
a red apple on a table | make the apple orange | an orange apple on a table
a cat on a sofa | change the color of the sofa to green | a cat on a green sofa
a cat on a sofa | change the sofa's color to green | a cat on a green sofa
a red car | paint the car blue | a blue car
a cat on a sofa | color the sofa light blue | a cat on a light blue sofa
a cat on a sofa | turn the cat black | a black cat on a sofa
a kitchen with a table | make the table out of marble | a kitchen with a marble table
a wooden table in a kitchen | make the table red | a red wooden table in a kitchen
a beach under a blue sky | make the sky pink | a beach under a pink sky
a man on a bench | make the man older | an old man on a bench
a cat on a sofa | make the cat look happy | a happy cat on a sofa
a car | make it red | a red car
# Actions.
a man standing on a street | make the man smile | a man smiling on a street
a man on a street | make the man wear a hat | a man wearing a hat on a street
a girl in a park | have the girl hold a balloon | a girl holding a balloon in a park
# Background.
a cat on a sofa | change the background to a beach | a cat on a sofa with a beach in the background
a cat on a sofa | put it on a beach | a cat on a sofa with a beach in the background
a cat | replace the background with a forest | a cat with a forest in the background
a product on a white background | change the background to blue | a product with a blue background
a cat on a sofa | remove the background | a cat on a plain white background
a cat on a sofa | add mountains in the background | a cat on a sofa with mountains in the background
a cat on a sofa | blur the background | a cat on a sofa with a blurred background
# Global: season, weather, time of day, style.
a street with houses | make it winter | a street with houses in winter
a street with houses | make it night | a street with houses at night
a street at night | make it day | a street during the day
a cat on a sofa | make it rain | a cat on a sofa in the rain
a cat on a sofa | change the season to autumn | a cat on a sofa in autumn
a cat on a sofa | make it a sunny day | a cat on a sofa on a sunny day
a cat on a sofa | winter | a cat on a sofa in winter
a street with houses | make it look like a painting | a painting of a street with houses
a photo of a street with houses | make it look like a painting | a painting of a street with houses
a street with houses | in the style of van gogh | a street with houses, in the style of van gogh
a lake with mountains | turn it into a watercolor | a watercolor painting of a lake with mountains
a cat on a sofa | make it black and white | a black and white photo of a cat on a sofa
a cat | make the whole image look like an oil painting | an oil painting of a cat
a cat on a sofa | make it look like it was painted by monet | a cat on a sofa, in the style of monet
a cat on a sofa | anime style | an anime illustration of a cat on a sofa
a cat on a sofa | make it cyberpunk style | a cat on a sofa, in cyberpunk style
# Polite, noisy and capitalised variants.
a cat on a sofa | Please turn the cat into a dog. | a dog on a sofa
a cat on a sofa | can you make the cat a tiger? | a tiger on a sofa
a cat on a sofa | TURN THE CAT INTO A DOG!!! | a dog on a sofa
a cat on a sofa | Could you please add a hat to the cat? Thanks! | a cat with a hat on a sofa
A cat on a sofa. | turn the cat into a dog | A dog on a sofa.
A photo of a cat | make it look like a watercolor painting | A watercolor painting of a cat
# Several edits in one instruction.
a cat on a sofa | turn the cat into a dog and make the sofa red | a dog on a red sofa
a cat on a sofa | turn the cat into a dog, then make it night | a dog on a sofa at night
# The named object is not in the caption: the edit is appended.
a cat on a sofa | turn the pillow into a teddy bear | a cat on a sofa with a teddy bear
a cat on a sofa | remove the pillow | a cat on a sofa without a pillow
a cat on a sofa | make the car red | a cat on a sofa with a red car
"""
CASES = [
    tuple(part.strip() for part in line.split("|"))
    for line in CASES_TABLE.strip().splitlines()
    if not line.startswith("#")
]
# Whitespace in the instruction matters here, so these stay outside the table.
CASES += [
    ("a cat on a sofa", "  I want you to   make the sofa blue. ", "a cat on a blue sofa"),
]


@pytest.fixture
def rules() -> RulesDescriber:
    return RulesDescriber()


def test_enough_forms_are_covered():
    assert len(CASES) >= 40
    assert len({instruction.lower() for _, instruction, _ in CASES}) >= 40


@pytest.mark.parametrize(("caption", "instruction", "expected"), CASES)
def test_rewrite(rules, caption, instruction, expected):
    assert rules.rewrite([caption], [instruction]) == [expected]


def test_rewrite_batch_keeps_order(rules):
    captions = [c for c, _, _ in CASES]
    instructions = [i for _, i, _ in CASES]
    assert rules.rewrite(captions, instructions) == [e for _, _, e in CASES]


@pytest.mark.parametrize(
    ("instruction", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("???", "empty"),
        ("...", "empty"),
        ("please", "unparsed"),
        ("42", "unparsed"),
        ("asdf qwer", "unparsed"),
        ("lorem ipsum dolor sit amet", "unparsed"),
        ("hello there", "unparsed"),
        ("the cat", "unparsed"),
        ("blue", "unparsed"),
        ("replace the cat", "unparsed"),
        ("turn the cat into", "unparsed"),
        ("make it", "unparsed"),
        ("make it better", "unparsed"),
        ("make asdf qwer", "unparsed"),
        ("why is the sky blue", "unparsed"),
        ("make the sofa a sofa", "no_change"),
        ("x" * 400, "too_long"),
    ],
)
def test_refuses_with_reason(rules, instruction, reason):
    with pytest.raises(DescribeError) as info:
        rules.rewrite(["a cat on a sofa"], [instruction])
    assert info.value.reason == reason
    assert reason in REASONS
    assert str(info.value)  # a readable message


def test_unparsed_message_names_the_instruction_and_known_forms(rules):
    with pytest.raises(DescribeError, match=r"asdf qwer.*replace X with Y"):
        rules.rewrite(["a cat on a sofa"], ["asdf qwer"])


def test_no_change_when_already_true(rules):
    with pytest.raises(DescribeError) as info:
        rules.rewrite(["a street at night"], ["make it night"])
    assert info.value.reason == "no_change"


def test_non_text_inputs(rules):
    for caption, instruction in [(None, "add a hat"), ("a cat", 3), (["a cat"], "add a hat")]:
        with pytest.raises(DescribeError) as info:
            rules.rewrite([caption], [instruction])
        assert info.value.reason == "not_text"


def test_strict_mode_reports_missing_objects():
    strict = RulesDescriber(strict=True)
    for instruction in (
        "turn the pillow into a dog",
        "remove the pillow",
        "make the pillow red",
        "add a hat to the pillow",
    ):
        with pytest.raises(DescribeError) as info:
            strict.rewrite(["a cat on a sofa"], [instruction])
        assert info.value.reason == "not_found"
        assert "pillow" in str(info.value)
    assert strict.rewrite(["a cat on a sofa"], ["turn the cat into a dog"]) == ["a dog on a sofa"]


def test_on_error_return_puts_errors_in_place(rules):
    out = rules.rewrite(["a cat", "a cat", "a cat"], ["add a hat", "asdf", ""], on_error="return")
    assert out[0] == "a cat with a hat"
    assert [e.reason for e in out[1:]] == ["unparsed", "empty"]
    with pytest.raises(ValueError, match="on_error"):
        rules.rewrite(["a cat"], ["add a hat"], on_error="ignore")


def test_mismatched_batch_lengths(rules):
    with pytest.raises(ValueError, match="one instruction per caption"):
        rules.rewrite(["a cat", "a dog"], ["add a hat"])


def test_describe_error_pickles_with_reason():
    err = pickle.loads(pickle.dumps(DescribeError("unparsed", "cannot parse 'x'")))
    assert isinstance(err, ValueError)
    assert (err.reason, err.message) == ("unparsed", "cannot parse 'x'")
    assert str(err) == "cannot parse 'x' [unparsed]"


def test_caption_is_not_supported(rules):
    assert not rules.supports("caption")
    assert rules.supports("rewrite") and rules.supports("write_instructions")
    with pytest.raises(UnsupportedRoleError) as info:
        rules.caption([None])
    assert isinstance(info.value, NotImplementedError)
    assert "'rules'" in str(info.value) and "'openai'" in str(info.value)


# Instruction writing ----------------------------------------------------------------------------

WRITE_CAPTIONS = [
    "a cat on a sofa",
    "two dogs playing in a park",
    "a red car parked on a street",
    "a man riding a horse on a beach",
    "a bowl of apples on a wooden table",
    "a woman holding an umbrella in the rain",
    "a castle on a hill at sunset",
    "a plate of cookies next to a cup of coffee",
    "an old lighthouse by the sea",
    "a girl with a balloon",
    "a boat on a lake with mountains",
    "a small kitchen with a table and two chairs",
    "a cozy living room",
    "a bird sitting on a tree branch",
    "a bicycle leaning against a brick wall",
    "a pizza with mushrooms",
    "children playing football",
    "a vase of flowers on a windowsill",
    "A brown bear in a forest",
    "the Eiffel Tower at night",
]

_WRITE_SCRIPT = """
import json
from regionedit_jax.describe import RulesDescriber
edits = RulesDescriber().write_instructions(json.loads(input()))
print(json.dumps([[e.instruction, e.target_caption, e.kind] for e in edits]))
"""


def _write_in_subprocess(hash_seed: str) -> list[list[str]]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run(
        [sys.executable, "-c", _WRITE_SCRIPT],
        input=json.dumps(WRITE_CAPTIONS),
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout)


def test_write_instructions_is_stable_across_processes(rules):
    edits = rules.write_instructions(WRITE_CAPTIONS)
    here = [[e.instruction, e.target_caption, e.kind] for e in edits]
    assert _write_in_subprocess("1") == here
    assert _write_in_subprocess("2") == here


def test_write_instructions_pairs_are_consistent_and_varied(rules):
    edits = rules.write_instructions(WRITE_CAPTIONS)
    assert all(isinstance(e, Edit) for e in edits)
    for caption, edit in zip(WRITE_CAPTIONS, edits, strict=True):
        assert edit.instruction and edit.target_caption != caption
        assert rules.rewrite([caption], [edit.instruction]) == [edit.target_caption]
    assert len({e.kind for e in edits}) >= 5
    assert len({e.instruction.split()[0] for e in edits}) >= 5


def test_write_instructions_known_pair():
    edit = RulesDescriber().write_instructions(["a cat on a sofa"])[0]
    assert edit == Edit("change the sofa to a couch", "a cat on a couch", "replace")


def test_write_instructions_is_deterministic_and_salted():
    first = RulesDescriber(seed=0).write_instructions(WRITE_CAPTIONS)
    assert RulesDescriber(seed=0).write_instructions(WRITE_CAPTIONS) == first
    assert RulesDescriber(seed=1).write_instructions(WRITE_CAPTIONS) != first


@pytest.mark.parametrize(
    ("caption", "reason"),
    [
        ("", "empty"),
        ("  ...  ", "empty"),
        (None, "not_text"),
        (42, "not_text"),
        ("cat", "too_short"),
        ("a " * 60 + "cat", "too_long"),
        ("IMG_2039.JPG", "garbled"),
        ("http://example.com/cat.jpg", "garbled"),
        ("$$$ 50% OFF !!! ###", "garbled"),
    ],
)
def test_write_instructions_rejects_with_reason(rules, caption, reason):
    (out,) = rules.write_instructions([caption], on_error="return")
    assert isinstance(out, DescribeError) and out.reason == reason
    with pytest.raises(DescribeError):
        rules.write_instructions([caption])


# The factory ------------------------------------------------------------------------------------


def test_make_by_name_and_config():
    assert isinstance(make("rules"), RulesDescriber)
    assert make({"backend": "rules", "strict": True}).strict is True
    assert make({"name": "rules"}, seed=3).seed == 3
    chosen = make({"backend": "rules", "rules": {"seed": 5}, "openai": {"model": "unused"}})
    assert isinstance(chosen, RulesDescriber) and chosen.seed == 5
    built = RulesDescriber()
    assert make(built) is built
    assert isinstance(make("openai", base_url="http://127.0.0.1:9/v1"), OpenAIDescriber)


def test_make_from_config_dict():
    ml_collections = pytest.importorskip("ml_collections")
    config = ml_collections.ConfigDict({"backend": "rules", "strict": False, "seed": 7})
    assert make(config).seed == 7


def test_make_rejects_bad_requests():
    with pytest.raises(ValueError, match="unknown describe backend 'magic'"):
        make("magic")
    with pytest.raises(ValueError, match="names no backend"):
        make({"strict": True})
    with pytest.raises(TypeError, match=r"unknown option.*'colour'"):
        make("rules", colour="red")
