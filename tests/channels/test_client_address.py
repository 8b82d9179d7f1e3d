"""Client addresses behind reverse proxies (pure functions; no network)."""
from __future__ import annotations

import ipaddress

import pytest

from channels.client_address import address_in, client_address, parse_address, parse_networks
from channels.config import ConfigError, GatewayConfig

PROXIES = parse_networks("10.0.0.0/8, 192.168.1.7, 2001:db8:feed::/48", "GATEWAY_TRUSTED_PROXIES")


def test_parse_networks():
    assert PROXIES == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.168.1.7/32"),
                       ipaddress.ip_network("2001:db8:feed::/48"))
    assert parse_networks("", "X") == () and parse_networks(" , ", "X") == ()
    # Written as IPv4-mapped IPv6, a network is the IPv4 network it means.
    assert parse_networks("::ffff:10.1.0.0/112", "X") == (ipaddress.ip_network("10.1.0.0/16"),)
    with pytest.raises(ValueError, match="GATEWAY_TRUSTED_PROXIES.*'10.0.0.0/33'"):
        parse_networks("10.0.0.1, 10.0.0.0/33", "GATEWAY_TRUSTED_PROXIES")


def test_untrusted_peer_is_the_client_whatever_its_header_says():
    assert client_address("203.0.113.9", "10.0.0.5", PROXIES) == "203.0.113.9"
    assert client_address("203.0.113.9", "198.51.100.1, 10.0.0.5", PROXIES) == "203.0.113.9"
    # Without trusted proxies the header is never read.
    assert client_address("10.0.0.1", "198.51.100.1", ()) == "10.0.0.1"


def test_trusted_chain_gives_the_rightmost_untrusted_hop():
    # The customer forged the left-most hop; the proxies appended what they saw.
    forwarded = "1.1.1.1, 198.51.100.23, 192.168.1.7"
    assert client_address("10.0.0.2", forwarded, PROXIES) == "198.51.100.23"
    assert client_address("10.0.0.2", "198.51.100.23", PROXIES) == "198.51.100.23"
    # Repeated headers arrive joined with commas; spaces and ports are tolerated.
    assert client_address("10.0.0.2", "1.1.1.1,198.51.100.23:4711 , 10.9.9.9", PROXIES) == "198.51.100.23"
    assert client_address("2001:db8:feed::1", "[2001:db8:cafe::7]:443", PROXIES) == "2001:db8:cafe::7"


def test_trusted_peer_without_a_usable_header_is_the_client():
    assert client_address("10.0.0.2", None, PROXIES) == "10.0.0.2"
    assert client_address("10.0.0.2", "", PROXIES) == "10.0.0.2"
    # A malformed hop ends the walk at the last address known good.
    assert client_address("10.0.0.2", "198.51.100.23, unknown", PROXIES) == "10.0.0.2"
    assert client_address("10.0.0.2", "garbage, 10.0.0.3", PROXIES) == "10.0.0.3"
    # Every hop a proxy: the left-most one is as far as anyone can tell.
    assert client_address("10.0.0.2", "10.0.0.4, 10.0.0.3", PROXIES) == "10.0.0.4"


def test_ipv4_mapped_ipv6_matches_ipv4_networks_and_is_reported_as_ipv4():
    assert address_in("::ffff:10.0.0.1", PROXIES)
    assert address_in("::ffff:192.168.1.7", PROXIES)
    assert not address_in("::ffff:192.168.1.8", PROXIES)
    assert client_address("::ffff:10.0.0.1", "::ffff:198.51.100.23", PROXIES) == "198.51.100.23"
    assert client_address("::ffff:203.0.113.9", "198.51.100.23", PROXIES) == "203.0.113.9"
    assert parse_address("::ffff:1.2.3.4") == ipaddress.ip_address("1.2.3.4")


@pytest.mark.parametrize("value", [None, "", "unknown", "10.0.0.1/8", "[::1", "300.1.1.1", "1.2.3.4:x:y", 42])
def test_malformed_addresses_match_nothing_and_never_raise(value):
    assert address_in(value, PROXIES) is False
    assert client_address(value, "198.51.100.23", PROXIES) == ""


def test_gateway_config_reads_the_trusted_proxies_and_the_web_chat_limits():
    config = GatewayConfig.from_env({"GATEWAY_TRUSTED_PROXIES": "10.0.0.0/8,::1",
                                     "WEBCHAT_RATE_PER_SESSION": "off",
                                     "WEBCHAT_RATE_PER_ADDRESS": "600/min",
                                     "WEBCHAT_MAX_PENDING": "4"})
    assert config.trusted_proxies == parse_networks("10.0.0.0/8,::1", "X")
    assert config.webchat_rate_per_session is None
    assert (config.webchat_rate_per_address.count, config.webchat_rate_per_address.seconds) == (600, 60)
    assert config.webchat_max_pending == 4
    defaults = GatewayConfig.from_env({})
    assert defaults.trusted_proxies == ()
    assert str(defaults.webchat_rate_per_session) == "30/60s"
    assert str(defaults.webchat_rate_per_address) == "300/60s"
    assert defaults.webchat_max_pending == 10
    for bad in ({"GATEWAY_TRUSTED_PROXIES": "proxy.example.com"}, {"WEBCHAT_RATE_PER_ADDRESS": "lots"},
                {"WEBCHAT_MAX_PENDING": "0"}):
        with pytest.raises(ConfigError):
            GatewayConfig.from_env(bad)
