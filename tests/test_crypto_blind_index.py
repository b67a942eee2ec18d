"""Blind indexes: normalisation, per-tenant keys, lookup through encrypted columns."""

from __future__ import annotations

import pytest

from appliance.web.crypto import email_index, normalise_email, normalise_phone, phone_index
from appliance.web.crypto.blind_index import NormalisationError
from appliance.web.db import database_proxy
from tests.crypto_support import TContact, make_instance, open_instance


@pytest.fixture
def inst(tmp_path):
    instance = make_instance(tmp_path / "home")  # default country code 44, trunk prefix 0
    open_instance(instance)
    yield instance
    database_proxy.close()


@pytest.mark.parametrize("typed", [
    "+44 20 7946 0958", "+44 (20) 7946-0958", "0044 20 7946 0958", "020 7946 0958",
    "(020) 7946.0958", "tel:+442079460958", "\uff0b44 20 7946 0958",  # full-width plus
])
def test_phone_forms_normalise_to_e164(typed):
    assert normalise_phone(typed, default_country_code="44", trunk_prefix="0") == "+442079460958"


def test_phone_national_prefixes():
    assert normalise_phone("8 (916) 123-45-67", default_country_code="7", trunk_prefix="8") == "+79161234567"
    assert normalise_phone("(415) 555-0100", default_country_code="1", trunk_prefix="") == "+14155550100"
    with pytest.raises(NormalisationError):
        normalise_phone("020 7946 0958", default_country_code="", trunk_prefix="0")
    for bad in ["call me", "+12", "+44 20 7946 0958 ext 12", "+0 123 456 789"]:
        with pytest.raises(NormalisationError):
            normalise_phone(bad, default_country_code="44")


def test_email_normalisation():
    assert normalise_email("  Anna.Müller@Example.COM ") == "anna.müller@example.com"
    assert normalise_email("STRASSE@EXAMPLE.DE") == normalise_email("strasse@example.de")
    for bad in ["no-at-sign", "a@b@c", "@example.com", "a b@example.com"]:
        with pytest.raises(NormalisationError):
            normalise_email(bad)


def test_index_is_keyed_per_tenant_and_truncated(inst):
    a = phone_index(1, "+44 20 7946 0958")
    assert a == phone_index(1, "020 7946 0958") and len(a) == 16
    assert a != phone_index(2, "+44 20 7946 0958")
    assert email_index(1, "A@Example.com") == email_index(1, "a@example.com")
    assert email_index(1, "a@example.com") != phone_index(1, "+44 20 7946 0958")
    assert phone_index(1, "not a phone") is None


def test_lookup_by_phone_and_email(inst):
    alice = TContact.create(tenant=1, name="Alice", phone="+44 20 7946 0958", email="Alice@Example.com")
    TContact.create(tenant=1, name="Bob", phone="+44 20 7946 0000", email="bob@example.com")
    TContact.create(tenant=2, name="Other tenant Alice", phone="+44 20 7946 0958", email="alice@example.com")
    assert [c.id for c in TContact.find_by_index(1, "phone", "0044 20 7946-0958")] == [alice.id]
    assert [c.id for c in TContact.find_by_index(1, "email", " ALICE@example.COM")] == [alice.id]
    assert TContact.find_by_index(1, "phone", "letters") == []
    q = TContact.select().where((TContact.tenant == 1) & TContact.index_match(1, "email", "bob@example.com"))
    assert [c.name for c in q] == ["Bob"]


def test_index_follows_changes(inst):
    c = TContact.create(tenant=1, name="Alice", phone="+44 20 7946 0958")
    c.phone = "+44 20 7946 1111"
    c.save()
    assert TContact.find_by_index(1, "phone", "+44 20 7946 0958") == []
    assert [x.id for x in TContact.find_by_index(1, "phone", "020 7946 1111")] == [c.id]
    c.phone = None
    c.save()
    assert TContact.get_by_id(c.id).phone_bidx is None
