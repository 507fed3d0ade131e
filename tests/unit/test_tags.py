"""Tags: from the class, from a ``tags()`` method, per dispatch; checked, and carried in the
envelope only when there are some."""

from __future__ import annotations

import pytest

from kashq import Job, NamedJob
from kashq.envelope import Envelope, decode
from kashq.exceptions import EnvelopeError, JobDefinitionError
from kashq.names import TAGS_MAX, check_tags, is_tag


class Invoice(Job):
    invoice_id: int
    tags = ("billing",)

    def handle(self) -> None: ...


class Upload(Job):
    user_id: int
    video_id: int

    def tags(self) -> list[str]:  # type: ignore[override]
        return [f"user:{self.user_id}", f"video:{self.video_id}"]

    def handle(self) -> None: ...


class Broken(Job):
    def tags(self) -> list[str]:  # type: ignore[override]
        raise KeyError("no such field")

    def handle(self) -> None: ...


def _tags(job: Job | NamedJob) -> tuple[str, ...]:
    return job.to_envelope(default_queue="default", now=1.0).tags


def test_tags_come_from_the_class_a_method_and_each_dispatch_without_repeats():
    assert _tags(Invoice(invoice_id=1)) == ("billing",)
    assert _tags(Upload(user_id=7, video_id=3)) == ("user:7", "video:3")
    assert _tags(Upload(user_id=7, video_id=3).with_tags("vip", "user:7")) == (
        "user:7",
        "video:3",
        "vip",
    )
    assert _tags(NamedJob("send", {}).with_tags("mail")) == ("mail",)


def test_an_untagged_job_writes_no_tags_field():
    env = NamedJob("send", {}).to_envelope(default_queue="default", now=1.0)
    assert env.tags == () and '"tags"' not in env.encode()


def test_tags_round_trip_and_bad_ones_in_stored_text_are_an_envelope_error():
    env = Envelope("i", "t", "q", {}, 1.0, 1.0, tags=("a", "user:1"))
    assert decode(env.encode()).tags == ("a", "user:1")
    with pytest.raises(EnvelopeError, match="tags"):
        decode(env.encode().replace('["a","user:1"]', '["a",2]'))


def test_bad_tags_are_refused_where_they_are_given():
    with pytest.raises(ValueError, match="a tag is"):
        Invoice(invoice_id=1).with_tags(" padded")
    with pytest.raises(JobDefinitionError, match="a tag is"):

        class Bad(Job):
            tags = ("line\nbreak",)

            def handle(self) -> None: ...

    with pytest.raises(JobDefinitionError, match=r"Broken.tags\(\) raised KeyError"):
        Broken().dispatch()
    with pytest.raises(ValueError, match=f"at most {TAGS_MAX}"):
        check_tags([f"t{n}" for n in range(TAGS_MAX + 1)])
    with pytest.raises(ValueError, match="list of strings"):
        check_tags("billing")


@pytest.mark.parametrize(
    ("tag", "ok"),
    [
        ("user:42", True),
        ("App\\Models\\Video:7", True),
        ("two words", True),
        ("x" * 100, True),
        ("x" * 101, False),
        ("", False),
        (" lead", False),
        ("trail ", False),
        ("tab\tinside", False),
        (42, False),
    ],
)
def test_the_tag_rule(tag: object, ok: bool):
    assert is_tag(tag) is ok
