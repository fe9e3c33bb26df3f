"""Every text mami shows has its Turkish: no entry of the catalogue is
empty or fuzzy (a fuzzy one is not used), and the compiled catalogue is
the one of the source (a change to django.po without compilemessages
would show English)."""

import gettext
import re

from tests.helpers import ROOT

CATALOGUE = ROOT / "locale" / "tr" / "LC_MESSAGES"
ENTRY = re.compile(
    r'^msgid ((?:".*"\n)+)(msgid_plural (?:".*"\n)+)?msgstr(?:\[0\])? ((?:".*"\n)+)', re.M
)


def _text(quoted: str) -> str:
    return (
        "".join(re.findall(r'"(.*)"', quoted))
        .encode()
        .decode("unicode_escape")
        .encode("latin-1")
        .decode()
    )


def _entries() -> list[tuple[str, str, str]]:
    """(msgid, msgstr, the entry's text) of each entry but the header."""
    found = []
    for entry in (CATALOGUE / "django.po").read_text().split("\n\n"):
        match = ENTRY.search(entry + "\n")
        if match and _text(match.group(1)) and not match.group(2):
            found.append((_text(match.group(1)), _text(match.group(3)), entry))
    return found


def test_every_entry_is_translated_and_none_is_fuzzy():
    missing = [
        msgid
        for msgid, _msgstr, entry in _entries()
        if "#, fuzzy" in entry or re.search(r'msgstr(\[\d\])? ""\n?$', entry.strip() + "\n")
    ]
    assert missing == []


def test_the_compiled_catalogue_matches_its_source():
    with (CATALOGUE / "django.mo").open("rb") as compiled:
        catalogue = gettext.GNUTranslations(compiled)
    stale = [
        msgid
        for msgid, msgstr, entry in _entries()
        if "#, fuzzy" not in entry and catalogue.gettext(msgid) != msgstr
    ]
    assert stale == []
