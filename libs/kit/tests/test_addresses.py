"""The client behind proxies: one rule for the gateway and the charger gateway."""

import pytest

from opendrec_kit.addresses import client_address, networks


def test_the_client_is_the_peer_or_behind_a_trusted_proxy_the_right_most_untrusted_forwarded_address():
    trusted = networks(["127.0.0.1/32", "10.1.0.0/16"])
    assert client_address("203.0.113.5", "198.51.100.1", trusted) == "203.0.113.5"  # not a proxy: ignored
    assert client_address("127.0.0.1", "198.51.100.1", trusted) == "198.51.100.1"
    assert client_address("127.0.0.1", "6.6.6.6, 198.51.100.1, 10.1.2.3", trusted) == "198.51.100.1"
    assert client_address("127.0.0.1", "not-an-address", trusted) == "not-an-address"  # bounded, never trusted
    assert client_address("127.0.0.1", "x" * 500, trusted) == "x" * 64
    assert client_address("127.0.0.1", None, trusted) == "127.0.0.1"
    assert client_address("127.0.0.1", "198.51.100.1", ()) == "127.0.0.1"  # no trusted proxies: the peer
    assert client_address(None, None, trusted) == "unknown"
    with pytest.raises(ValueError):
        networks(["not-a-network"])
