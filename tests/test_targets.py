"""Target selection, path templates and DRACOON name rules, file names and upload notes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from recording_storage.errors import InvalidJobMessage, PermanentError
from recording_storage.instances import ANY_MEETING_TYPE, DracoonAccount, TargetRule, TargetSpec
from recording_storage.jobs import JobMessage, job_message_body, parse_job_message
from recording_storage.jobs.parse import MAX_KEYS
from recording_storage.targets import (
    MAX_DEPTH,
    ExpirationPassed,
    InvalidTargetConfig,
    NoTargets,
    ResolvedTarget,
    check_path_template,
    earlier_file_names_for,
    expand_path_template,
    extension_for,
    file_name_for,
    name_length,
    naming,
    node_name_key,
    parse_source_marker,
    resolve_targets,
    sanitize_node_name,
    source_marker,
    template_variables,
    upload_notes,
    validate_node_name,
)
from tests.fixtures.accounts import offline_account

EMAIL = "support@24sessions.com"
MEETING_DATE = datetime(2018, 12, 13, 14, 15, tzinfo=UTC)
SOON_AFTER = datetime(2018, 12, 13, 15, 0, tzinfo=UTC)


def make_job(
    *,
    targets: list[dict[str, Any]] | None = None,
    keys: list[str] | None = None,
    type_: dict[str, Any] | None = None,
    user: dict[str, Any] | None = None,
    customer_id: str | None = "C-1234",
    date: str = "2018-12-13T14:15:00Z",
    timezone: str = "Europe/Berlin",
) -> JobMessage:
    return parse_job_message(json.dumps(job_message_body(
        "recordings",
        keys or ["sandbox/test-video.mp4"],
        domain="meet.example.com",
        targets=targets,
        customer_id=customer_id,
        meeting={
            "id": 22980,
            "type": {"name": "live now", "duration": 60, "id": 14} if type_ is None else type_,
            "user": {"name": "Sessions Support", "email": EMAIL} if user is None else user,
            "guest": {"name": "Guest Person", "email": "guest@24s.co"},
            "date": date,
            "timezone": timezone,
        },
    )))


def account(*rules: tuple[str, list[tuple[str, str | None]]]) -> DracoonAccount:
    specs = (TargetRule(tid, tuple(TargetSpec(p, e) for p, e in specs)) for tid, specs in rules)
    return offline_account(*specs, parent_room_id=7)


# --- node names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["Recordings", "a", "Räume 2019", "x" * 150, "🎥" * 75, "CONSOLE", "COM10", "xCON", ".hidden", "a.b"],
)
def test_valid_node_names(name: str) -> None:
    assert validate_node_name(name) == []


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "is empty"),
        (".", "must not be '.'"),
        ("..", "must not be '..'"),
        ("x" * 151, "too long (151 characters"),
        ("🎥" * 76, "too long (152 characters"),
        *[(f"a{c}b", "forbidden") for c in '\\<>:"|?*/'],
        ("a\x00b", "control"),
        ("a\x1fb", "control"),
        ("a\x7fb", "control"),
        ("a\nb", "control"),
        ("a\u2028b", "control"),
        ("gpj\u202eexe", "control"),
        ("-a", "must not start with '-'"),
        ("a.", "must not end with '.'"),
        ("a ", "must not end with '.' or a space"),
        ("CON", "reserved"),
        ("con", "reserved"),
        ("Con.txt", "reserved"),
        ("NUL.tar.gz", "reserved"),
        ("COM1", "reserved"),
        ("lpt9", "reserved"),
        ("AUX .x", "reserved"),
    ],
)
def test_invalid_node_names(name: str, reason: str) -> None:
    found = validate_node_name(name)
    assert any(reason in p for p in found), found


def test_name_problems_do_not_echo_the_name() -> None:
    found = validate_node_name("Jane Doe Private Room/" + "x" * 200 + ".")
    assert len(found) == 3
    assert not any("Jane" in p for p in found)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Sales", "Sales"),
        ("a/b", "a_b"),
        ("..", "_"),
        (".", "_"),
        ("", "_"),
        ("   ", "_"),
        ("-x", "_x"),
        ("x. . ", "x"),
        ("CON", "_CON"),
        ("con.txt", "_con.txt"),
        ('a<b>c:d"e|f?g*h\\i', "a_b_c_d_e_f_g_h_i"),
        ("tab\there", "tab_here"),
        ("a\u3000" + "b" * 200, "a\u3000" + "b" * 148),
        ("x" * 149 + "\u3000y", "x" * 149),
        ("e\u0301", "\u00e9"),  # NFC
        ("x" * 200, "x" * 150),
        ("🎥" * 100, "🎥" * 75),
    ],
)
def test_sanitize_node_name(raw: str, clean: str) -> None:
    assert sanitize_node_name(raw) == clean


@given(st.text(max_size=300))
def test_sanitized_names_are_always_valid_and_stable(raw: str) -> None:
    clean = sanitize_node_name(raw)
    assert validate_node_name(clean) == []
    assert sanitize_node_name(clean) == clean


@given(st.text(min_size=1, max_size=160))
def test_sanitize_keeps_valid_names(raw: str) -> None:
    import unicodedata

    if validate_node_name(raw) == [] and raw == raw.strip() and unicodedata.is_normalized("NFC", raw):
        assert sanitize_node_name(raw) == raw


# --- path templates and normalisation -----------------------------------------------------

VARS: dict[str, str | None] = {
    "instance": "meet.example.com",
    "meetingType": "live now",
    "meetingId": "22980",
    "year": "2018",
    "month": "03",
    "day": "07",
}


@pytest.mark.parametrize(
    ("template", "segments"),
    [
        ("", ()),
        ("/", ()),
        ("//", ()),
        ("Recordings", ("Recordings",)),
        ("/a/b/", ("a", "b")),
        ("some room/sub-room", ("some room", "sub-room")),
        ("$instance/$meetingType", ("meet.example.com", "live now")),
        ("${instance}/${meetingType}-x", ("meet.example.com", "live now-x")),
        ("$year/$month/$day/$meetingId", ("2018", "03", "07", "22980")),
        ("${year}-${month}-${day}", ("2018-03-07",)),
        ("Cash $$ and $$$meetingId", ("Cash $ and $22980",)),
        ("%2e%2e", ("%2e%2e",)),
        ("/".join("abcdefghij"), tuple("abcdefghij")),
    ],
)
def test_expand_path_template(template: str, segments: tuple[str, ...]) -> None:
    assert check_path_template(template) == []
    assert expand_path_template(template, VARS) == (segments, [])


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("..", "segment 1: must not be '..'"),
        ("../x", "segment 1: must not be '..'"),
        ("a/../../b", "segment 2: must not be '..'"),
        ("./a", "segment 1: must not be '.'"),
        ("a/./b", "segment 2: must not be '.'"),
        ("a\\..\\b", "forbidden"),
        ("..\\..\\etc", "forbidden"),
        ("a//b", "empty segment"),
        ("a/ /b", "must not end with '.' or a space"),
        ("a/b./c", "must not end with '.'"),
        ("-a", "must not start with '-'"),
        ("CON/x", "segment 1: is a reserved name"),
        ("x/lpt1.mp4", "segment 2: is a reserved name"),
        ("a:b", "forbidden"),
        ("a\x00b", "control"),
        ("/".join("abcdefghijk"), f"too deep (11 levels, at most {MAX_DEPTH})"),
        ("x" * 151, "too long"),
        ("x" * 1025, "too long (1025 characters, at most 1024)"),
        ("$who", "unknown variable $who"),
        ("${meetingtype}", "unknown variable $meetingtype"),
        ("$meetingType_x", "unknown variable $meetingType_x"),
        ("cost $5", "stray '$'"),
        ("${instance", "stray '$'"),
        ("x$", "stray '$'"),
        ("-$instance", "must not start with '-'"),
        ("$instance.", "must not end with '.'"),
        ("$instance:x", "forbidden or control characters outside variables"),
        ("${instance}" + "x" * 151, "fixed text alone is longer"),
    ],
)
def test_bad_templates(template: str, reason: str) -> None:
    found = check_path_template(template)
    assert any(reason in p for p in found), found
    segments, problems = expand_path_template(template, VARS)
    assert problems and segments == ()


@pytest.mark.parametrize(
    ("value", "segment"),
    [
        ("../../etc", ".._.._etc"),
        ("..", "_"),
        ("a/b", "a_b"),
        ("CON", "_CON"),
        ("-x", "_x"),
        ("x.", "x"),
        ("  sales\n", "sales"),
        ("x" * 300, "x" * 150),
    ],
)
def test_variable_values_cannot_inject_paths(value: str, segment: str) -> None:
    """Values come from messages: they are sanitised into one segment, never split or escaped."""
    segments, problems = expand_path_template("Rec/$meetingType", {**VARS, "meetingType": value})
    assert problems == []
    assert segments == ("Rec", segment)


def test_variable_without_value_is_a_problem() -> None:
    segments, problems = expand_path_template("Rec/$meetingType", {**VARS, "meetingType": None})
    assert problems == ["segment 2: $meetingType has no value for this meeting"]


@settings(max_examples=300)
@given(
    st.lists(st.sampled_from([*"ab./$\\ {}-:\t", "$instance", "${day}", ".."]), max_size=20).map("".join),
    st.text(max_size=30),
)
def test_expanded_paths_are_always_safe(template: str, value: str) -> None:
    """Whatever the template and values, a result without problems is a list of valid names."""
    segments, problems = expand_path_template(template, {**VARS, "instance": value, "day": value})
    if not problems:
        assert len(segments) <= MAX_DEPTH
        for s in segments:
            assert validate_node_name(s) == []
            assert "/" not in s and s not in (".", "..")


def test_template_variables_use_the_meeting_zone() -> None:
    job = make_job(date="2019-12-31T23:30:00Z", timezone="Europe/Berlin")
    assert template_variables(job) == {
        "instance": "meet.example.com",
        "meetingType": "live now",
        "meetingId": "22980",
        "year": "2020",
        "month": "01",
        "day": "01",
    }


# --- resolve_targets -----------------------------------------------------------------------


def test_message_targets_win_over_configured_ones() -> None:
    job = make_job(targets=[{"path": "$instance/$meetingType", "expiration": "1 day"}, {"path": "Archive"}])
    acc = account((ANY_MEETING_TYPE, [("Configured", None)]))
    assert resolve_targets(job, acc, now=SOON_AFTER) == [
        ResolvedTarget(("meet.example.com", "live now"), datetime(2018, 12, 14, 14, 15, tzinfo=UTC), "1 day"),
        ResolvedTarget(("Archive",), None, None),
    ]


def test_configured_rules_match_type_id_and_any() -> None:
    job = make_job()  # type id 14
    acc = account(
        ("13", [("Other", None)]),
        ("14", [("Sales/$year", "1 year"), ("Team", None)]),
        (ANY_MEETING_TYPE, [("All", "5 days")]),
        (" 14 ", [("Padded", None)]),
    )
    resolved = resolve_targets(job, acc, now=SOON_AFTER)
    assert [t.path for t in resolved] == ["Sales/2018", "Team", "All", "Padded"]
    assert resolved[0].expire_at == datetime(2019, 12, 13, 14, 15, tzinfo=UTC)
    assert resolved[2].expiration_text == "5 days"


def test_meeting_without_type_id_matches_only_any() -> None:
    job = make_job(type_={"name": "x"})
    acc = account(("14", [("Typed", None)]), (ANY_MEETING_TYPE, [("All", None)]))
    assert [t.path for t in resolve_targets(job, acc, now=SOON_AFTER)] == ["All"]


def test_string_type_ids_match() -> None:
    job = make_job(type_={"name": "x", "id": "abc-1"})
    acc = account(("abc-1", [("Typed", None)]))
    assert [t.path for t in resolve_targets(job, acc, now=SOON_AFTER)] == ["Typed"]


@pytest.mark.parametrize("targets", [None, []])
def test_no_targets_anywhere_is_permanent(targets: list[dict[str, Any]] | None) -> None:
    job = make_job(targets=targets)
    with pytest.raises(NoTargets) as info:
        resolve_targets(job, account(("13", [("Other", None)])), now=SOON_AFTER)
    assert isinstance(info.value, PermanentError)
    assert info.value.code == "no_targets"
    assert "meeting type 14" in str(info.value)
    with pytest.raises(NoTargets, match=r"meeting type \(none given\)"):
        resolve_targets(make_job(type_={}), account(), now=SOON_AFTER)


@pytest.mark.parametrize("path", ["", "/"])
def test_empty_path_is_the_parent_room(path: str) -> None:
    job = make_job(targets=[{"path": path}])
    assert resolve_targets(job, account(), now=SOON_AFTER) == [ResolvedTarget((), None, None)]


def test_duplicates_merge_keeping_the_longest_retention() -> None:
    job = make_job()
    acc = account(
        ("14", [("A/B", "1 week"), ("Keep", "2 days"), ("Z", "1 day")]),
        (ANY_MEETING_TYPE, [("/A/B/", "1 year"), ("Keep", None), ("Z", "1 day"), ("A/B", "1 month")]),
    )
    resolved = resolve_targets(job, acc, now=SOON_AFTER)
    assert [(t.path, t.expiration_text) for t in resolved] == [
        ("A/B", "1 year"),
        ("Keep", None),
        ("Z", "1 day"),
    ]


@pytest.mark.parametrize(
    "targets",
    [
        [{"path": "R2", "expiration": "10 days"}, {"path": "r2"}],
        [{"path": "r2"}, {"path": "R2", "expiration": "10 days"}],
        [{"path": "Caf\u00e9/R2", "expiration": "10 days"}, {"path": "CAFE\u0301/r2"}],  # NFC vs NFD
    ],
)
def test_one_room_spelt_two_ways_is_one_target_keeping_no_expiry(targets: list[dict[str, Any]]) -> None:
    """DRACOON compares names ignoring case (and we send NFC), so these are one room: uploaded once,
    and "no expiry beats any expiry" whichever spelling or order carries it (issue 13 item 1)."""
    with structlog.testing.capture_logs() as logs:
        resolved = resolve_targets(make_job(targets=targets), account(), now=SOON_AFTER)
    assert len(resolved) == 1
    assert resolved[0].expire_at is None and resolved[0].expiration_text is None
    assert resolved[0].segments == tuple(targets[0]["path"].split("/"))  # the first spelling is used
    (merged,) = [e for e in logs if e["event"] == "targets_merged"]
    assert merged["log_level"] == "info"
    assert merged["kept_expiration"] is None and merged["dropped_expiration"] == "10 days"


def test_same_room_with_same_retention_merges_silently() -> None:
    job = make_job(targets=[{"path": "A"}, {"path": "a"}])
    with structlog.testing.capture_logs() as logs:
        resolved = resolve_targets(job, account(), now=SOON_AFTER)
    assert [t.segments for t in resolved] == [("A",)]
    assert [e for e in logs if e["event"] == "targets_merged"] == []


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("R2", "r2", True),
        ("Caf\u00e9", "CAFE\u0301", True),  # canonically equivalent spellings
        ("\u00c4rzte", "\u00e4RZTE", True),
        ("\u03a3\u03bf\u03c6\u03af\u03b1", "\u03c3\u03bf\u03c6\u03af\u03b1", True),
        ("Stra\u00dfe", "STRASSE", False),  # no length-changing folds: never merge rooms DRACOON keeps apart
        ("R2", "R2 ", False),
        ("a", "b", False),
    ],
)
def test_node_name_identity(a: str, b: str, same: bool) -> None:
    assert (node_name_key(a) == node_name_key(b)) is same


@given(st.text(alphabet=st.characters(max_codepoint=0x7F)))
def test_an_ascii_name_keys_as_the_general_fold_does(name: str) -> None:
    """ASCII names take a shortcut; followed by a non-ASCII letter (which composes with nothing
    before it) they take the general path, and the keys must agree."""
    assert node_name_key(name + "\u00e9") == node_name_key(name) + "\u00e9"
    assert node_name_key(name + "\u00c9") == node_name_key(name) + "\u00e9"


def test_expiry_counts_from_the_meeting_date_and_passed_ones_fail() -> None:
    job = make_job(targets=[{"path": "a", "expiration": "1 day"}, {"path": "b", "expiration": "1 year"}])
    ok = resolve_targets(job, account(), now=datetime(2018, 12, 14, 14, 14, tzinfo=UTC))
    assert ok[0].expire_at == datetime(2018, 12, 14, 14, 15, tzinfo=UTC)
    with pytest.raises(ExpirationPassed) as info:
        resolve_targets(job, account(), now=datetime(2018, 12, 14, 14, 15, tzinfo=UTC))
    assert info.value.code == "expiration_passed"
    assert "1 target(s) already expired" in str(info.value)


def test_message_target_problems_name_the_message_field() -> None:
    job = make_job(type_={"id": 14}, targets=[{"path": "ok"}, {"path": "Rec/$meetingType"}])
    with pytest.raises(InvalidJobMessage) as info:
        resolve_targets(job, account(), now=SOON_AFTER)
    assert [(p.path, p.message) for p in info.value.problems] == [
        ("storage.extra.dracoon.targets[1].path", "segment 2: $meetingType has no value for this meeting")
    ]


def test_configured_target_problems_name_the_config_field() -> None:
    job = make_job()
    acc = account(("14", [("ok", None), ("../up", "soon")]), (ANY_MEETING_TYPE, [("x", "0 days")]))
    with pytest.raises(InvalidTargetConfig) as info:
        resolve_targets(job, acc, now=SOON_AFTER)
    assert info.value.code == "invalid_target_config"
    paths = [p.path for p in info.value.problems]
    assert paths == [
        "instances[meet.example.com].targets[0].copyTo[1].path",
        "instances[meet.example.com].targets[0].copyTo[1].expiration",
        "instances[meet.example.com].targets[1].copyTo[0].expiration",
    ]


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        resolve_targets(make_job(targets=[{"path": "a"}]), account(), now=datetime(2020, 1, 1))


# --- file names ----------------------------------------------------------------------------


def test_original_file_name_format() -> None:
    """{email}--{customerId}--{date in meeting zone, Go layout 2006-01-02_15-04_MST}.{ext}"""
    job = make_job(date="2017-09-11T20:24:43Z")
    name = file_name_for(job, "sandbox/test-video.mp4", "video/mp4", key_count=1)
    assert name == "support@24sessions.com--C-1234--2017-09-11_22-24_CEST.mp4"


def test_file_name_variants() -> None:
    assert file_name_for(make_job(customer_id=None), "k.mp4", None, key_count=1) == (
        "support@24sessions.com----2018-12-13_15-15_CET.mp4"
    )
    job = make_job(customer_id='A/B <c> "d" e f', timezone="Asia/Dubai")
    assert file_name_for(job, "k", "audio/mpeg", key_count=1) == (
        "support@24sessions.com--AB+c+d+e+f--2018-12-13_18-15_+04.mp3"
    )
    no_email = make_job(user={"name": "x"}, timezone="")
    assert (
        file_name_for(no_email, "k.webm", None, key_count=1)
        == "meeting-22980--C-1234--2018-12-13_14-15_UTC.webm"
    )


@pytest.mark.parametrize(
    ("key", "content_type", "ext"),
    [
        ("a.bin", "video/mp4", "mp4"),
        ("a", "video/mp4; codecs=avc1", "mp4"),
        ("a", "VIDEO/WEBM", "webm"),
        ("a", "audio/mpeg", "mp3"),
        ("a", "audio/mp3", "mp3"),
        ("a", "audio/wav", "wav"),
        ("a", "audio/x-wav", "wav"),
        ("a", "audio/ogg", "ogg"),
        ("a", "audio/mp4", "m4a"),
        ("a.MKV", "application/octet-stream", "mkv"),
        ("dir.v2/rec.tar.gz", None, "gz"),
        ("rec.final.mp3", None, "mp3"),
        ("no-dot-at-all", None, "mp4"),  # original bug 4: crashed here
        ("dir.x/no-dot", None, "mp4"),
        (".hidden", None, "mp4"),
        ("trailing.", None, "mp4"),
        ("weird.m p4", None, "mp4"),
        ("long.abcdefghijk", None, "mp4"),
        ("", None, "mp4"),
    ],
)
def test_extension(key: str, content_type: str | None, ext: str) -> None:
    assert extension_for(key, content_type) == ext


def test_several_keys_get_distinct_stable_names() -> None:
    keys = ["rec/video.mp4", "rec/audio.mp3", "other/video.mp4", "phone", "x/VIDEO.mp4"]
    job = make_job(keys=keys)
    names = [file_name_for(job, k, None, key_count=len(keys)) for k in keys]
    assert len({n.casefold() for n in names}) == len(keys)
    assert names[1] == "support@24sessions.com--C-1234--2018-12-13_15-15_CET--audio.mp3"
    assert names[3] == "support@24sessions.com--C-1234--2018-12-13_15-15_CET--phone.mp4"
    assert re.fullmatch(r".*--video-[0-9a-f]{8}\.mp4", names[0])
    # A redelivery parses the same message again: same names.
    again = make_job(keys=keys)
    assert [file_name_for(again, k, None, key_count=len(keys)) for k in keys] == names


def test_naming_a_full_job_stems_each_key_a_few_times(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shared stems are worked out once per job: comparing every key with every other made a
    1,000-key job spend seconds (a million comparisons) before its first byte moved."""
    keys = [f"calls/rec-{i}.mp4" for i in range(MAX_KEYS - 1)] + ["other/rec-7.mp4"]
    job = make_job(keys=keys)
    real, calls = naming._stem, []

    def counting(key: str, *space: str) -> str:
        calls.append(key)
        return real(key, *space)

    monkeypatch.setattr(naming, "_stem", counting)
    names = [file_name_for(job, k, None, key_count=len(keys)) for k in keys]
    assert len({n.casefold() for n in names}) == MAX_KEYS
    assert [k for k, n in zip(keys, names, strict=True) if re.search(r"--rec-7-[0-9a-f]{8}\.mp4$", n)] == [
        "calls/rec-7.mp4", "other/rec-7.mp4"]
    assert len(calls) <= 2 * MAX_KEYS


def test_stems_differing_in_case_or_normalisation_get_distinct_names() -> None:
    """Names go out NFC and DRACOON ignores case, so these two stems would clash in one room."""
    keys = ["a/Caf\u00e9.mp4", "b/CAFE\u0301.mp4"]
    job = make_job(keys=keys)
    names = [file_name_for(job, k, None, key_count=2) for k in keys]
    assert len({node_name_key(n) for n in names}) == 2
    assert all(re.search(r"--(Caf\u00e9|CAF\u00c9)-[0-9a-f]{8}\.mp4$", n) for n in names), names


def test_key_stems_keep_their_spaces() -> None:
    """Issue 13 item 7: the stem is used as it is (DRACOON allows spaces); only characters DRACOON
    forbids go, and no name ends in a space."""
    keys = ["rec/Notes v1.mp3", "rec/ lead  two  spaces .mp4", "rec/" + "x" * 39 + " y.mp4", "a/b<c>.mp4"]
    job = make_job(keys=keys)
    names = [file_name_for(job, k, None, key_count=len(keys)) for k in keys]
    base = "support@24sessions.com--C-1234--2018-12-13_15-15_CET--"
    assert names == [
        base + "Notes v1.mp3",
        base + "lead  two  spaces.mp4",
        base + "x" * 39 + ".mp4",
        base + "bc.mp4",
    ]
    assert all(validate_node_name(n) == [] for n in names)


def test_earlier_names_are_what_the_previous_release_called_each_key() -> None:
    """Redelivery after an upgrade must recognise files uploaded under the old names, which
    turned spaces in a stem into '_' (and so could make two stems clash). The expected names
    below were produced by the previous release."""
    keys = ["a/Notes v1.mp3", "b/Notes_v1.mp3", "c/ lead  two  spaces .mp4", "d/plain.mp4",
            "e/" + "x" * 39 + " y.mp4"]
    job = make_job(keys=keys)
    base = "support@24sessions.com--C-1234--2018-12-13_15-15_CET--"
    old = {
        "a/Notes v1.mp3": (base + "Notes_v1-dbdf886c.mp3",),
        "b/Notes_v1.mp3": (base + "Notes_v1-c91714d8.mp3",),
        "c/ lead  two  spaces .mp4": (base + "lead__two__spaces.mp4",),
        "d/plain.mp4": (),
        "e/" + "x" * 39 + " y.mp4": (base + "x" * 39 + "_.mp4",),
    }
    assert {k: earlier_file_names_for(job, k, None, key_count=len(keys)) for k in keys} == old
    assert file_name_for(job, "b/Notes_v1.mp3", None, key_count=len(keys)) == base + "Notes_v1.mp3"
    single = make_job(keys=["a/Notes v1.mp3"])
    assert earlier_file_names_for(single, "a/Notes v1.mp3", None, key_count=1) == ()


def test_one_key_has_no_stem() -> None:
    job = make_job()
    assert "--test-video" not in file_name_for(job, "sandbox/test-video.mp4", None, key_count=1)
    assert "--test-video.mp4" in file_name_for(job, "sandbox/test-video.mp4", None, key_count=2)


def test_long_parts_are_truncated_keeping_the_extension() -> None:
    job = make_job(user={"email": "e" * 240 + "@x.com"}, customer_id="🎥" * 200, keys=["a/" + "k" * 300, "b"])
    name = file_name_for(job, "a/" + "k" * 300, "video/mp4", key_count=2)
    assert name_length(name) <= 150
    assert name.endswith(".mp4")
    assert validate_node_name(name) == []
    short_email = make_job(customer_id="🎥" * 200)
    name = file_name_for(short_email, "k.mp4", None, key_count=1)
    # The original's budget for the customer id: 100 - len(email) - len(ext), never half an emoji.
    assert name == f"{EMAIL}--{'🎥' * 37}--2018-12-13_15-15_CET.mp4"


def test_long_customer_id_without_email_keeps_date_stem_and_extension() -> None:
    keys = ["rec/" + "v" * 60 + ".mp4", "rec/audio.mp3"]
    job = make_job(user={}, customer_id="c" * 200, keys=keys)
    name = file_name_for(job, keys[0], None, key_count=2)
    assert name_length(name) == 150
    assert name.startswith("meeting-22980--ccc")
    assert name.endswith("--2018-12-13_15-15_CET--" + "v" * 40 + ".mp4")


def test_email_starting_with_dash_is_made_valid() -> None:
    name = file_name_for(make_job(user={"email": "-x@y.z"}), "k", None, key_count=1)
    assert name.startswith("_x@y.z--")


@settings(max_examples=200)
@given(
    email=st.text(max_size=60),
    customer=st.text(max_size=120),
    keys=st.lists(st.text(min_size=1, max_size=80).filter(lambda k: "\x00" not in k), min_size=1, max_size=4),
    content_type=st.none() | st.sampled_from(["video/mp4", "audio/ogg", "text/plain", ""]),
)
def test_file_names_are_always_valid_and_distinct(
    email: str, customer: str, keys: list[str], content_type: str | None
) -> None:
    try:
        job = make_job(user={"email": email}, customer_id=customer, keys=keys)
    except InvalidJobMessage:
        return
    names = [file_name_for(job, k, content_type, key_count=len(job.s3.keys)) for k in job.s3.keys]
    for key, name in zip(job.s3.keys, names, strict=True):
        assert validate_node_name(name) == [], name
        assert name.endswith("." + extension_for(key, content_type)), name
        assert re.search(r"--\d{4}-\d\d-\d\d_\d\d-\d\d_CET", name), name
    assert len(set(names)) == len(names)


# --- notes and source markers --------------------------------------------------------------


def test_notes_without_personal_data_by_default() -> None:
    job = make_job(date="2017-09-11T20:24:43Z")
    notes = upload_notes(job, "sandbox/test-video.mp4", "recordings", '"9b2cf535f27731c974343645a3985328"')
    assert notes.splitlines() == [
        "Meeting ID: 22980.",
        "Type: live now (60 min).",
        "Date: Mon, 11 Sep 2017 22:24:43 CEST.",
        source_marker("recordings", "sandbox/test-video.mp4", "9b2cf535f27731c974343645a3985328"),
    ]
    for pii in (EMAIL, "Sessions Support", "Guest Person", "guest@24s.co", "C-1234", "test-video"):
        assert pii not in notes


def test_notes_with_personal_data_when_asked() -> None:
    notes = upload_notes(make_job(), "k", "b", "e", include_pii=True)
    assert "User: Sessions Support (support@24sessions.com)." in notes.splitlines()
    assert "Guest: Guest Person (guest@24s.co)." in notes.splitlines()
    assert "Extra info: C-1234." in notes.splitlines()


def test_notes_are_capped_and_keep_the_marker() -> None:
    job = make_job(
        type_={"name": "T\n" + "🎥" * 250, "duration": 5}, user={"name": "n" * 250, "email": EMAIL}
    )
    notes = upload_notes(job, "k", "b", "x" * 100, include_pii=True)
    assert name_length(notes) <= 255
    assert parse_source_marker(notes) == source_marker("b", "k", "x" * 100)
    assert notes.splitlines()[1].startswith("Type: T 🎥")  # the embedded newline became a space


def test_source_marker_identifies_bucket_key_and_etag() -> None:
    m = source_marker("b", "k.mp4", '"abc123"')
    assert re.fullmatch(r"rs:src=[0-9a-f]{16}:etag=abc123", m)
    assert source_marker("b", "k.mp4", "abc123") == m
    assert "k.mp4" not in m
    others = {
        source_marker("b2", "k.mp4", "abc123"),
        source_marker("b", "k2.mp4", "abc123"),
        source_marker("b", "k.mp4", "abc124"),
        source_marker("b/k", ".mp4", "abc123"),
    }
    assert m not in others and len(others) == 4
    assert source_marker("b", "k", "d41d8cd98f00b204e9800998ecf8427e-12").endswith("-12")
    assert source_marker("b", "k", "").endswith(":etag=none")


@pytest.mark.parametrize(
    "notes",
    [
        None,
        "",
        "Meeting ID: 1.",
        "rs:src=zz:etag=1",
        "rs:src=0123456789abcdef:etag=",
        "rs:src=0123456789abcde:etag=a",
    ],
)
def test_parse_source_marker_none(notes: str | None) -> None:
    assert parse_source_marker(notes) is None


def test_parse_source_marker_finds_it_anywhere() -> None:
    marker = source_marker("b", "k", "etag-1")
    assert parse_source_marker(f"free text\r\n{marker}\r\n") == marker
    assert parse_source_marker(f"{marker}!more") == marker
