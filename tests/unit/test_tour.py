"""The tour file: the demo is valid, and every kind of mistake is named at its line and field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nomadkit import ROOT
from nomadkit.errors import UserError
from nomadkit.tour import Tour, load_tour
from nomadkit.tourfile import TourFileError, parse

DEMO = ROOT / "tours" / "demo.yaml"
DEMO_TEXT = DEMO.read_text()


def test_demo_tour_is_the_case_study() -> None:
    tour = load_tour(DEMO)
    assert len(tour.stops) == 5 and len({s.name for s in tour.stops}) == 5
    assert all(s.kits == ["kit-a", "kit-b"] and s.capacity == 50 for s in tour.stops)
    for kit in tour.kits:
        kinds = {u.name: u.kind for u in kit.uplinks}
        assert kinds == {"wwan0": "modem", "wwan1": "modem", "sat0": "satellite"}
    assert sum(len(k.streams) for k in tour.kits) == 2
    assert any(t.members_only for t in tour.commerce.tiers) and tour.commerce.merch
    assert Path(tour.assets_dir).is_dir()  # resolved against the tour file's folder


def test_demo_cache_manifest_matches_the_shipped_assets() -> None:
    import hashlib

    tour = load_tour(DEMO)
    for asset in tour.kits[0].cache:
        data = (Path(tour.assets_dir) / asset.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == asset.sha256 and len(data) == asset.bytes


def _line_of(text: str, anchor: str) -> int:
    return text[: text.index(anchor)].count("\n") + 1


# (case id, text to replace in the demo, replacement, field path, words in the message, anchor line)
BAD_EDITS = [
    ("typo-key", "    venue: Casa do Fado Velho", "    venu: Casa do Fado Velho",
     "stops[0].venu", "did you mean 'venue'", None),
    ("impossible-date", "date: 2027-06-11", "date: 2027-13-11", "stops[1].date", "date", None),
    ("dates-out-of-order", "date: 2027-06-12", "date: 2027-06-01", "stops[2].date",
     "must not be before stops[1].date", None),
    ("unknown-kit", "kits: [kit-a, kit-b]\n    consent_url: https://nightshift.example/consent/graca",
     "kits: [kit-a, kit-c]\n    consent_url: https://nightshift.example/consent/graca",
     "stops[2].kits[1]", "no kit named 'kit-c'", None),
    ("bad-timezone", "timezone: Europe/Lisbon", "timezone: Europe/Lisbn", "stops[0].timezone",
     "IANA", None),
    ("capacity-words", "capacity: 50", "capacity: fifty", "stops[0].capacity", "whole number", None),
    ("inline-pin", 'pin: "secret:kit_a_wwan0_pin"', 'pin: "1234"', "kits[0].uplinks[0].pin",
     "inline PIN", None),
    ("inline-webhook-secret", 'webhook_secret: "secret:night_shift_webhook"',
     "webhook_secret: whsec_abcdefghijklmnop", "commerce.webhook_secret", "secret reference", None),
    ("aws-key-pasted-anywhere", "venue: Largo Studio", "venue: AKIAABCDEFGHIJKLMNOP",
     "stops[1].venue", "inline secret", None),
    ("modem-without-apn", 'apn: internet, carrier: MEO, pin: "secret:kit_b_wwan0_pin"',
     'carrier: MEO, pin: "secret:kit_b_wwan0_pin"', "kits[1].uplinks[0].apn", "APN", None),
    ("satellite-before-modem",
     'priority: 2, apn: internet.vodafone.pt, carrier: Vodafone, pin: "secret:kit_a_wwan1_pin"',
     'priority: 4, apn: internet.vodafone.pt, carrier: Vodafone, pin: "secret:kit_a_wwan1_pin"',
     "kits[0].uplinks[2].priority", "satellite must come after every modem",
     '{name: sat0, kind: satellite, priority: 3, mac: "52:54:00:0a:00:03"}'),
    ("duplicate-kit", "  - name: kit-b\n    management: {address: kit-b",
     "  - name: kit-a\n    management: {address: kit-b", "kits[1].name", "already used", None),
    ("duplicate-uplink", '{name: wwan1, kind: modem, priority: 2, apn: internet.vodafone.pt, '
     'carrier: Vodafone, pin: "secret:kit_b_wwan1_pin"',
     '{name: wwan0, kind: modem, priority: 2, apn: internet.vodafone.pt, '
     'carrier: Vodafone, pin: "secret:kit_b_wwan1_pin"', "kits[1].uplinks[1].name", "already used", None),
    ("streaming-kit-one-uplink",
     '      - {name: wwan1, kind: modem, priority: 2, apn: internet.vodafone.pt, carrier: Vodafone, '
     'pin: "secret:kit_b_wwan1_pin", mac: "52:54:00:0b:00:02"}\n'
     '      - {name: sat0, kind: satellite, priority: 3, mac: "52:54:00:0b:00:03"}\n', "",
     "kits[1].uplinks", "at least two uplinks",
     '    uplinks:\n      - {name: wwan0, kind: modem, priority: 1, apn: internet, carrier: MEO, '
     'pin: "secret:kit_b'),
    ("bitrate-out-of-range", "bitrates_kbps: [900, 600, 400]", "bitrates_kbps: [90000, 600, 400]",
     "kits[0].streams[0].bitrates_kbps[0]", "20000", None),
    ("ladder-upside-down", "bitrates_kbps: [700, 450, 300]", "bitrates_kbps: [300, 450, 700]",
     "kits[1].streams[0].bitrates_kbps", "highest to lowest", None),
    ("odd-resolution", "resolution: 640x360", "resolution: 640x361", "kits[0].streams[0].resolution",
     "even numbers", None),
    ("scalar-for-mapping", "management: {address: kit-b.nightshift.internal, port: 22, user: root}",
     "management: kit-b.nightshift.internal", "kits[1].management", "mapping", None),
    ("unknown-uplink-kind", "kind: satellite", "kind: starlink", "kits[0].uplinks[2].kind",
     "'modem', 'satellite' or 'ethernet'", None),
    ("key-written-twice", "name: night-shift\n", "name: night-shift\nname: other-tour\n", "name",
     "written twice", "name: other-tour"),
    ("bad-currency", "currency: EUR", "currency: euro", "commerce.currency", "ISO 4217", None),
    ("tiers-oversell-venue", "{name: general, price: 18.00, capacity: 35}",
     "{name: general, price: 18.00, capacity: 45}", "stops[0].capacity", "sell 60 seats",
     "capacity: 50"),
    ("impossible-doors-time", 'doors_open: "19:30"', 'doors_open: "25:99"', "stops[0].doors_open",
     "HH:MM", None),
    ("short-mac", 'mac: "52:54:00:0b:00:03"', 'mac: "52:54:00:0B:00"', "kits[1].uplinks[2].mac",
     "MAC address", None),
    ("relative-consent-url", "consent_url: https://nightshift.example/consent/belem",
     "consent_url: belem", "stops[4].consent_url", "https://", None),
    ("commerce-misspelt", "commerce:\n", "commerc:\n", "commerc", "did you mean 'commerce'",
     "commerc:"),
    ("price-fraction-of-cent", "price: 12.00", "price: 12.005", "commerce.tiers[1].price",
     "two decimal places", None),
]


@pytest.mark.parametrize(
    ("old", "new", "path", "words", "anchor"),
    [case[1:] for case in BAD_EDITS],
    ids=[case[0] for case in BAD_EDITS],
)
def test_bad_tour_names_line_and_field(old: str, new: str, path: str, words: str,
                                       anchor: str | None) -> None:
    assert DEMO_TEXT.count(old) >= 1, "the edit must apply to the demo"
    text = DEMO_TEXT.replace(old, new, 1)
    with pytest.raises(TourFileError) as caught:
        parse(text, "summer.yaml")
    expected_line = _line_of(text, anchor or new)
    matching = [p for p in caught.value.problems if p.path == path]
    assert matching, f"no problem at {path}: {caught.value}"
    assert any(p.line == expected_line and words in p.message for p in matching), str(caught.value)
    assert all(" — " in p.message for p in caught.value.problems), "every error says what to do"
    assert f"summer.yaml:{expected_line}:" in str(caught.value)


def test_every_problem_is_listed_at_once() -> None:
    text = (DEMO_TEXT.replace("capacity: 50", "capacity: lots", 1)
            .replace("kind: satellite", "kind: balloon", 1)
            .replace("currency: EUR", "currencyy: EUR", 1))
    with pytest.raises(TourFileError) as caught:
        parse(text, "t.yaml")
    assert {p.path for p in caught.value.problems} >= {
        "stops[0].capacity", "kits[0].uplinks[2].kind", "commerce.currencyy"}
    assert str(caught.value).endswith("problems found.")


@pytest.mark.parametrize(("text", "words"), [
    ("", "empty"),
    ("# only a comment\n", "empty"),
    ("- just\n- a list\n", "a tour file is a mapping"),
    ("name: x\nstops: [\n", "YAML syntax"),
    ("name: a\n\tstops: []\n", "YAML syntax"),
])
def test_unreadable_yaml_is_located(text: str, words: str) -> None:
    with pytest.raises(TourFileError) as caught:
        parse(text, "t.yaml")
    assert words in str(caught.value) and str(caught.value).startswith("t.yaml:")


def test_times_stay_times_and_no_is_not_false() -> None:
    """YAML 1.1 would read 19:30 as 1170 and NO as false; the tour file reads neither so."""
    text = DEMO_TEXT.replace('doors_open: "19:30"', "doors_open: 19:30", 1).replace(
        "city: Lisbon", "city: NO", 1)
    tour = parse(text)
    assert tour.stops[0].doors_open.strftime("%H:%M") == "19:30" and tour.stops[0].city == "NO"


def test_missing_file_and_directory_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such tour file"):
        load_tour(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match="is a directory"):
        load_tour(tmp_path)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nomadkit.cli", *args],
                          capture_output=True, text=True, timeout=60)


def test_validate_cli_summarises_the_demo() -> None:
    done = _cli("validate", str(DEMO))
    assert done.returncode == 0, done.stderr
    assert "tour 'night-shift' is valid" in done.stdout and "belem" in done.stdout
    summary = json.loads(_cli("validate", str(DEMO), "--json").stdout)
    assert summary["stops"][0]["name"] == "alfama"


def test_validate_cli_never_shows_a_traceback(tmp_path: Path) -> None:
    binary = tmp_path / "tour.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    for target in (binary, tmp_path / "missing.yaml"):
        done = _cli("validate", str(target))
        assert done.returncode == 1
        assert "Traceback" not in done.stderr and str(target) in done.stderr


def test_schema_is_json_schema_of_the_tour() -> None:
    schema = json.loads(_cli("schema").stdout)
    assert schema["title"] == "Tour" and {"stops", "kits", "commerce"} <= set(schema["properties"])
    assert schema["properties"].keys() == Tour.model_json_schema()["properties"].keys()


def test_every_tour_field_is_documented() -> None:
    """docs/tour-file.md is the reference: a field added to the model must be described there."""
    doc = (ROOT / "docs" / "tour-file.md").read_text()
    schema = Tour.model_json_schema()
    models = [schema, *schema["$defs"].values()]
    missing = [name for model in models for name in model.get("properties", {})
               if f"`{name}`" not in doc]
    assert not missing, f"undocumented tour fields: {missing}"
