"""An endpoint under a backend's url, and a request's parameters in its query."""

from __future__ import annotations

import pytest

from adapters.apis._urls import under, with_params


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("http://h/api", "http://h/api/newMessage"),
        ("http://h/api/", "http://h/api/newMessage"),
        ("https://gw/prefix/api?tenant=acme", "https://gw/prefix/api/newMessage?tenant=acme"),
        (
            "https://gw/api/?tenant=acme&sig=a%2Fb%3D",
            "https://gw/api/newMessage?tenant=acme&sig=a%2Fb%3D",
        ),
        ("http://[::1]:8080/a%3Fb/api?", "http://[::1]:8080/a%3Fb/api/newMessage?"),
        ("http://h/api?tenant=acme#part", "http://h/api/newMessage?tenant=acme"),
    ],
)
def test_an_endpoint_goes_under_the_path_before_the_query(url, endpoint):
    assert under(url, "/newMessage") == endpoint


@pytest.mark.parametrize(
    ("url", "sent"),
    [
        ("http://h/getThread", "http://h/getThread?threadId=t+1"),
        ("http://h/getThread?", "http://h/getThread?threadId=t+1"),
        ("http://h/getThread?tenant=acme", "http://h/getThread?tenant=acme&threadId=t+1"),
        # Kept as written (a gateway may have signed it), the same name not sent twice.
        (
            "http://h/getThread?sig=a%2Fb&threadId=old&x",
            "http://h/getThread?sig=a%2Fb&x&threadId=t+1",
        ),
        ("http://h/getThread?thread%49d=old#part", "http://h/getThread?threadId=t+1"),
    ],
)
def test_parameters_join_the_query_in_place_of_their_names(url, sent):
    assert with_params(url, {"threadId": "t 1"}) == sent


def test_no_parameters_leave_the_url_as_it_is():
    assert (
        with_params("http://h/a?b=%2F", None)
        == with_params("http://h/a?b=%2F", {})
        == ("http://h/a?b=%2F")
    )
