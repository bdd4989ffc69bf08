"""One set of upstream exceptions: the external engine's startup check raises the same
``UpstreamUnreachable`` the gateway's streaming client does, so one ``except`` catches both."""

from __future__ import annotations

import pytest

from coderig.engines import errors
from coderig.engines.external import UpstreamUnreachable, list_upstream_models


def test_external_engine_raises_the_shared_unreachable_class():
    assert UpstreamUnreachable is errors.UpstreamUnreachable


def test_no_answering_upstream_is_unreachable_and_names_every_url_tried():
    urls = ["http://127.0.0.1:9", "http://127.0.0.1:1"]
    with pytest.raises(errors.UpstreamFailure) as caught:
        list_upstream_models(urls, timeout=2.0)
    assert isinstance(caught.value, errors.UpstreamUnreachable)
    assert all(url in str(caught.value) for url in urls)


def test_a_rejection_keeps_the_upstream_status_and_message():
    rejected = errors.UpstreamRejected(429, "slow down")
    assert (rejected.status, rejected.message, str(rejected)) == (429, "slow down", "slow down")
    assert not isinstance(rejected, errors.UpstreamFailure)  # it answered: not a broken link
