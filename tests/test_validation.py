from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omni_edit import ValidationError
from omni_edit._wire.validation import (
    _PLAIN_HTTP_URL,
    _split,
    is_internal_host,
    validate_base_url,
    validate_callback_url,
    validate_prompt,
    validate_task_id,
    validate_video_url,
)

INTERNAL_HOSTS = [
    "localhost",
    "LOCALHOST.",
    "api.localhost",
    "0.0.0.0",
    "10.1.2.3",
    "100.64.0.1",
    "127.0.0.1",
    "127.255.1.1",
    "169.254.169.254",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "198.18.0.1",
    "224.0.0.1",
    "240.0.0.1",
    "127.1",  # short form that resolvers accept
    "2130706433",  # 127.0.0.1 as one number
    "0x7f.0.0.1",
    "::1",
    "::",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "64:ff9b::10.0.0.1",
    "2002:c0a8:0101::1",  # 6to4 of 192.168.1.1
]
PUBLIC_HOSTS = ["example.com", "8.8.8.8", "172.32.0.1", "192.169.0.1", "2001:4860::8888"]


@pytest.mark.parametrize("host", INTERNAL_HOSTS)
def test_internal_hosts_are_recognised(host: str) -> None:
    assert is_internal_host(host)


@pytest.mark.parametrize("host", PUBLIC_HOSTS)
def test_public_hosts_are_not_internal(host: str) -> None:
    assert not is_internal_host(host)


@pytest.mark.parametrize("host", INTERNAL_HOSTS)
def test_callback_url_to_internal_host_is_rejected(host: str) -> None:
    literal = f"[{host}]" if ":" in host else host
    with pytest.raises(ValidationError, match="internal address") as info:
        validate_callback_url(f"https://{literal}/hook")
    assert info.value.field == "callback_url"


def test_callback_url_must_be_https() -> None:
    with pytest.raises(ValidationError, match="https"):
        validate_callback_url("http://example.com/hook")


def test_callback_url_longer_than_2048_is_rejected() -> None:
    url = "https://example.com/" + "a" * 2029
    assert len(url) == 2049
    with pytest.raises(ValidationError, match="2048"):
        validate_callback_url(url)
    assert validate_callback_url(url[:-1]) == url[:-1]


def test_callback_url_userinfo_does_not_hide_an_internal_host() -> None:
    with pytest.raises(ValidationError, match="internal"):
        validate_callback_url("https://example.com@127.0.0.1/hook")


def test_callback_url_loopback_http_allowed_only_when_asked() -> None:
    url = "http://127.0.0.1:9000/hook"
    with pytest.raises(ValidationError):
        validate_callback_url(url)
    assert validate_callback_url(url, allow_loopback_http=True) == url
    with pytest.raises(ValidationError):
        validate_callback_url("http://10.0.0.1/hook", allow_loopback_http=True)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("ftp://example.com/a.mp4", "http:// or https://"),
        ("/local/file.mp4", "no host"),
        ("", "without spaces"),
        ("https://exa mple.com/a.mp4", "without spaces"),
        ("https://example.com:99999/a.mp4", "not a valid URL"),
    ],
)
def test_bad_video_urls_are_rejected(url: str, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        validate_video_url(url)


def _full_check(url: str) -> bool:
    """The general path's verdict on a video URL (what the fast path must agree with)."""
    try:
        _, parts, _ = _split(url, "video_url", "video_url")
    except ValidationError:
        return False
    return parts.scheme in ("http", "https")


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.from_regex(_PLAIN_HTTP_URL, fullmatch=True),
        st.text(alphabet="htps:/.-_@[]?#%9 0aZ\t\x01é", max_size=30).map(lambda t: "https://" + t),
        st.text(max_size=30),
    )
)
def test_the_fast_path_for_plain_urls_agrees_with_the_full_check(url: str) -> None:
    expected = _full_check(url)
    try:
        got = validate_video_url(url) == url
    except ValidationError:
        got = False
    assert got == expected


def test_video_url_must_be_a_string() -> None:
    with pytest.raises(ValidationError, match="must be a string"):
        validate_video_url(["https://example.com/a.mp4"])


@pytest.mark.parametrize("prompt", ["", "   \n", None, 3])
def test_empty_or_non_string_prompt_is_rejected(prompt: object) -> None:
    with pytest.raises(ValidationError) as info:
        validate_prompt(prompt)
    assert info.value.field == "prompt"


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000", "http://localhost", "http://[::1]:80/", "https://x.io"]
)
def test_base_url_accepts_https_and_loopback_http(url: str) -> None:
    assert validate_base_url(url) == url.rstrip("/")


@pytest.mark.parametrize("url", ["http://api.evolink.ai", "http://10.0.0.5:8080", "ws://x.io"])
def test_base_url_rejects_plain_http_elsewhere(url: str) -> None:
    with pytest.raises(ValidationError, match="base_url"):
        validate_base_url(url)


@pytest.mark.parametrize(
    "task_id",
    ["task-unified-a/b", "../x", "..", ".", "a b", "a\nb", "a%2Fb", "x" * 129, 7, "", "é"],
)
def test_malformed_task_ids_are_rejected(task_id: object) -> None:
    with pytest.raises(ValidationError, match="task id"):
        validate_task_id(task_id)


@pytest.mark.parametrize(
    "task_id",
    [
        "task-unified-1757169743-7cvnl5zw",
        "3f6c1d2e-8b4a-4f0e-9c57-2a1b0e9d7c44",  # a UUID, as EvoLink's own fixtures use
        "ns:task.1_a",
        "x",
        "...",
        "x" * 128,
    ],
)
def test_any_id_the_server_may_issue_is_accepted(task_id: str) -> None:
    """Ids are the server's to choose (docs/api.md#read-a-task), not ``task-unified-``."""
    assert validate_task_id(task_id) == task_id


@pytest.mark.parametrize(
    ("field", "call"),
    [
        ("prompt", lambda: validate_prompt("warmer \ud800 light")),
        ("prompt", lambda: validate_prompt("\udfff")),
        ("video_url", lambda: validate_video_url("https://example.com/clip\ud800.mp4")),
        (
            "callback_url",
            lambda: validate_callback_url("https://hooks.example.com/\udc00"),
        ),
    ],
)
def test_a_lone_surrogate_is_refused(field: str, call: Callable[[], str]) -> None:
    """Half of a UTF-16 pair has no UTF-8 form: it could be neither sent nor journaled."""
    with pytest.raises(ValidationError, match="surrogate") as info:
        call()
    assert info.value.field == field


def test_text_beyond_ascii_is_fine() -> None:
    assert validate_prompt("把灯光调暖 😀, keep the rest") == "把灯光调暖 😀, keep the rest"
