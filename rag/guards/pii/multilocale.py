"""Recognizers for PII as people write it in many countries (issue 23): phone numbers in any
national format (trunk prefixes, extensions, short local numbers after "call me on"), card
numbers in any grouping (Luhn-checked), postal addresses in European, American and other
formats on one line or several (street, unit line, postcode before or after the city), and
names that spaCy small misses (foreign names, names after "my name is" / "Hi", chat speaker
labels, CV headers, lower-case names after a cue).

Imports Presidio: loaded only when an engine is built (:mod:`rag.guards.pii.engine`). The
pattern logic itself is plain :mod:`re` in :func:`find_phones`, :func:`find_cards`,
:func:`find_addresses` and :func:`find_cue_names`, :func:`find_proper_names`.
"""

from __future__ import annotations

import re
from typing import Any

from presidio_analyzer import AnalysisExplanation, EntityRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

from rag.guards.pii.text import (
    DETERMINERS,
    LO,
    STOP,
    UP,
    company_word,
    is_english,
    word_list,
)

__all__ = [
    "AddressBlockRecognizer",
    "AnyGroupingCardRecognizer",
    "LocalePhoneRecognizer",
    "NameRecognizer",
    "find_addresses",
    "find_cards",
    "find_cue_names",
    "find_phones",
    "find_proper_names",
    "multilocale_recognizers",
]

Hit = tuple[int, int, float]

# -- phones -------------------------------------------------------------------------------
_PHONE = re.compile(
    r"(?<![\w+@#/.\-])(?:\+|00)?(?:\(\+?\d{1,5}\)[ \t.\-/]?)?\d[\d \t().\-/]{3,22}\d"
    r"(?:[ \t]?(?:x|ext\.?|extn\.?|extension|#)[ \t]?\d{1,6})?(?![\w@]|[.,/\-]\d)"
)
_EXT = re.compile(r"[ \t]?(?:x|ext\.?|extn\.?|extension|#)[ \t]?\d{1,6}$")
_STRONG = re.compile(
    r"(?i)\b(?:tel|tél|telephone|telefon|phone|ph|call|calls|called|calling|cb|callback|"
    r"call-back|mobile|mob|cell|cellphone|fax|ring|dial|whatsapp|sms|text|hotline|landline|"
    r"direct|reach|m|t|f|p|gsm|handy|puh|tfn|nr\.? tel)\b[.:]?"
)
_WEAK = re.compile(
    r"(?i)\b(?:number|no|nr|contact|office|home|work|at|on|kyc|references?|or|is)\b[.:]?"
)
_NEGATIVE = re.compile(
    r"(?i)\b(?:order|invoice|ticket|inc|ref|reference|sku|contract|version|qty|iban|account|"
    r"acct|card|ssn|social|zip|postcode|postal|case|id|tracking|serial|model|part|item|vat|"
    r"total|eur|usd|gbp|amount|bank|swift|bic|room|flat|apt|suite|floor|unit|po|box)\b"
)
_AFTER = re.compile(r"(?i)^[ \t]*[-(/]?[ \t]*(?:mobile|office|home|work|cell|fax|tel|direct)\b")
_DATE = re.compile(
    r"^(?:\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}|\d{1,2}:\d{2}.*)$"
)
_DOTTED = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
_SSN_SHAPE = re.compile(r"^\d{3}[- ]\d{2}[- ]\d{4}$")
_YEARS = re.compile(r"^(?:19|20)\d\d[ \t]*[-/][ \t]*(?:19|20)?\d\d$")


def _luhn(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _line_before(text: str, start: int, width: int = 32) -> str:
    line_start = text.rfind("\n", 0, start) + 1
    return text[max(line_start, start - width) : start]


_SPLIT = re.compile(r"[ \t]+[-–|/·•][ \t]+|[ \t]{2,}")


def _cue(before: str) -> str:
    """The cue nearest the number in the same sentence: strong, weak, negative or none. A
    negative cue ("invoice", "SKU", "floor") counts only right before the number."""
    sentence = re.split(r"[.;!?]\s+(?=[A-Z])", before)[-1]
    if re.search(_NEGATIVE.pattern + r"[ \t]*(?:number|no\.?|nr\.?|#|:)?[ \t]*$", sentence):
        return "negative"  # "Reference number 251693-50", "Order no. 1234567"
    best, kind = -1, "none"
    for pattern, name in ((_STRONG, "strong"), (_WEAK, "weak"), (_NEGATIVE, "negative")):
        for m in pattern.finditer(sentence):
            if name == "negative" and len(sentence) - m.end() > 4:
                continue
            if m.end() > best or (m.end() == best and name == "strong"):
                best, kind = m.end(), name
    return kind


def find_phones(text: str) -> list[Hit]:
    out: list[Hit] = []
    for m in _PHONE.finditer(text):
        pieces = [(m.start(), m.group(0))]
        raw_digits = sum(c.isdigit() for c in m.group(0))
        if raw_digits > 15 or _SPLIT.search(m.group(0)):
            pieces, pos = [], m.start()
            for part in _SPLIT.split(m.group(0)):
                at = text.index(part, pos)
                pieces.append((at, part))
                pos = at + len(part)
        for start, raw in pieces:
            hit = _phone(text, start, raw)
            if hit:
                out.append(hit)
    return out


def _phone(text: str, start: int, raw: str) -> Hit | None:
    raw = raw.rstrip(" \t-./(")
    if raw.count("(") != raw.count(")") and raw.startswith("("):
        raw, start = raw[1:], start + 1
    if raw.count(")") > raw.count("("):
        raw = raw[: raw.rfind(")")].rstrip(" \t-./")
    end = start + len(raw)
    number = _EXT.sub("", raw)
    digits = "".join(c for c in number if c.isdigit())
    n = len(digits)
    if n < 6 or n > 15:
        return None
    plain = number.strip()
    if _DATE.match(plain) or _DOTTED.match(plain) or _YEARS.match(plain):
        return None
    before = _line_before(text, start, 40)
    after = text[end : end + 16]
    cue = "strong" if _AFTER.match(after) else _cue(before)
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line = text[line_start : line_end if line_end >= 0 else len(text)]
    alone = not re.sub(r"[-–|/·•,;:\s]", "", line.replace(raw, "", 1))
    contact_line = "@" in line or bool(re.search(r"[·•|]", line))
    intl = plain.startswith(("+", "00", "(+"))
    grouped = any(c in number for c in " -./()")
    if n >= 13 and not grouped and cue != "strong":
        return None  # a long bare run: an account or card number more likely
    if n >= 13 and _luhn(digits) and cue != "strong":
        return None  # a card number (the card recognizer's)
    if _SSN_SHAPE.match(plain) and cue != "strong":
        return None  # a US SSN's shape (the SSN recognizer's)
    if intl and n >= 8:
        score = 0.8
    elif cue == "strong":
        score = 0.75
    elif cue == "negative":
        return None
    elif (cue == "weak" or alone or contact_line) and n >= 7:
        score = 0.6
    elif grouped and n >= 8 and plain[0] in "0(":
        score = 0.6  # a national number with its trunk prefix: 0470 12 34 56
    elif grouped and n >= 9:
        score = 0.55
    elif (grouped and n == 7 and re.fullmatch(r"\d{3}[ \-.]\d{4}", plain)) or (
        n in (10, 11) and digits[0] == "0"
    ):
        score = 0.45
    else:
        return None
    return start, end, score


# -- cards --------------------------------------------------------------------------------
_CARD = re.compile(r"(?<![\w\-.])[2-6]\d{1,5}(?:[ \-]?\d{1,8}){1,6}(?![\w\-]|\.\d)")
_CARD_CUE = re.compile(r"(?i)\b(?:card|visa|mastercard|amex|credit|debit|paid|pay|charge)")


def find_cards(text: str) -> list[Hit]:
    out: list[Hit] = []
    for m in _CARD.finditer(text):
        raw = m.group(0)
        digits = "".join(c for c in raw if c.isdigit())
        if not 13 <= len(digits) <= 19 or not _luhn(digits):
            continue
        seps = {c for c in raw if not c.isdigit()}
        if len(seps) > 1:
            continue
        cue = bool(_CARD_CUE.search(_line_before(text, m.start(), 40)))
        out.append((m.start(), m.end(), 0.9 if cue else 0.7))
    return out


# -- addresses ----------------------------------------------------------------------------
_CW = rf"[{UP}][{LO}{UP}'’\-]*\.?"  # a capitalised word ("Mannerheimintie", "St.", "O'Neil")
_PART = r"(?:de|del|della|di|da|do|dos|das|du|des|la|le|les|l'|d'|van|von|der|den|het|y|e|am|an|im|in|bei|pod|nad|sur|sous|al|el)"
# Street-type words written before the name, in many languages (lower or upper case).
_TYPE_BEFORE = (
    r"(?:rue|boulevard|bd|avenue|av\.?|allée|impasse|chemin|place|quai|cours|route|via|viale|"
    r"piazza|piazzale|corso|borgo|vicolo|contrada|strada|largo|calle|c/|avenida|avda\.?|pasaje|"
    r"plaza|paseo|glorieta|camino|carrer|ronda|travesía|callejón|alameda|urbanización|rua|"
    r"travessa|praça|estrada|rodovia|ladeira|ul\.?|ulica|al\.?|aleja|pl\.?|plac|os\.?|osiedle|"
    r"ngõ|ngách|hẻm|đường|phố|số|rte|hwy|highway)"
)
# Street-type endings and words written after the name ("Mannerheimintie", "Kossuth utca").
_STREET_ENDINGS = tuple(
    word_list("""straße strasse str. weg gasse platz allee ring damm ufer steig pfad chaussee straat laan
    plein gracht singel dreef kade hof baan dijk pad steeg gatan vägen gränd torget stigen
    backen allén vej gade allé stræde torv plads veien veg gata gate vegen bakken haugen grenda
    jordet stranda havna svingen tunet gjerdet løkka vollen katu tie kuja polku väylä bulevardi
    rinne kaari aukio tori ranta raitti mäki puisto utca út tér körút köz sor fasor sétány
    ulice náměstí nábřeží třída""")
)
_US_SUFFIX = (
    r"(?:Street|St|Road|Rd|Avenue|Ave|Av|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|"
    r"Square|Sq|Terrace|Ter|Way|Parkway|Pkwy|Highway|Hwy|Circle|Cir|Crescent|Cres|Close|Grove|"
    r"Gardens|Hill|Hills|Row|Walk|Mews|Green|Park|Trail|Trl|Alley|Plaza|Loop|Run|Path|Pike|"
    r"Center|Centre|Estate|Estates|Mills?|Lakes?|Locks?|Flats?|Fields?|Ridge|Ridges|Valley|"
    r"Views?|Village|Heights|Harbor|Harbour|Haven|Island|Isle|Shores?|Springs?|Stream|"
    r"Summit|Track|Tunnel|Turnpike|Union|Vista|Wall|Wells?|Branch|Bridge|Brook|Burg|Bypass|"
    r"Camp|Canyon|Cape|Causeway|Cliffs?|Club|Common|Corners?|Course|Cove|Creek|Crest|"
    r"Crossing|Curve|Dale|Dam|Divide|Expressway|Extension|Falls?|Ferry|Forest|Forge|Fork|"
    r"Forks|Fort|Freeway|Gateway|Glen|Glens|Harbors|Hollow|Inlet|Junction|Key|Keys|Knolls?|"
    r"Landing|Light|Lodge|Manor|Meadows?|Mission|Motorway|Mount|Mountain|Neck|Orchard|Oval|"
    r"Pass|Passage|Pines?|Plains?|Points?|Port|Prairie|Ranch|Rapids?|Rest|River|Roads|Route|"
    r"Shoals?|Skyway|Spur|Station|Stravenue|Trace|Trafficway|Underpass|Viaduct|Ville|Wharf|"
    r"Yard|Rise|Gate|Gardens)\.?"
)
_NUM = r"\d{1,5}[A-Za-z]?(?:[ \t]?[/\-][ \t]?\d{1,5}[A-Za-z]?){0,2}\.?"
_WORDS = rf"(?:(?:{_CW}|{_PART})[ \t]+){{0,4}}"
_STREET_PATTERNS = [
    # 12 rue de la Paix / 78, boulevard Roger / 807 Deborah Estate / 3 Burns Lake
    re.compile(
        rf"(?<![\w\-.,])(?:H\.?No\.?[ \t]*)?{_NUM},?[ \t]+(?:(?i:{_TYPE_BEFORE})[ \t]+{_WORDS}{_CW}"
        rf"|(?:[NSEW]\.?[ \t]+)?(?:{_CW}[ \t]+){{1,4}}{_US_SUFFIX}(?![{LO}{UP}])"
        rf"(?:[ \t]+(?:[NS][EW]|[NSEW])\b)?)"
    ),
    # ul. Długa 12 m. 4 / Via Roma 5 / Calle de Alcalá 20 / Rua Augusta, 13
    re.compile(
        rf"(?<![\w\-])(?i:{_TYPE_BEFORE})[ \t]+{_WORDS}{_CW},?[ \t]+{_NUM}"
        rf"(?:[ \t]*(?:m\.|lok\.|/)[ \t]*\d{{1,4}})?"
    ),
    # Mannerheimintie 62 / Hauptstraße 5 / Kossuth utca 64. / Musvåge Allé 202: the word
    # before the number must end in a street word (checked in _street_hits: a regex
    # alternation of endings backtracks at every capital letter).
    re.compile(
        rf"(?<![\w\-])(?:{_CW}[ \t]+){{0,3}}(?P<head>[{UP}{LO}][{LO}\-.]{{1,}}),?[ \t]+{_NUM}(?![\d])"
    ),
]
# A street name with a house number but no street word: an address only next to a postcode.
_BARE_STREET = re.compile(
    rf"(?<![\w\-])(?:{_CW}[ \t]+){{0,3}}[{UP}][{LO}\-]{{2,}},?[ \t]+{_NUM}(?![\d\w])"
    rf"|(?<![\w\-.,])(?:H\.?No\.?[ \t]*)?{_NUM},?[ \t]+(?:{_CW}[ \t]+){{0,3}}{_CW}"
)
_CITY = rf"{_CW}(?:[ \t\-]+(?:{_CW}|{_PART}|\([A-Z]{{2}}\)|/[ \t]*[A-Z]{{2}})){{0,4}}"
_UK_POST = r"[A-Z]{1,2}\d[A-Z\d]?[ \t]?\d[A-Z]{2}"
_EIRCODE = r"[A-Z]\d{2}[ \t]?[A-Z0-9]{4}"
_POSTCODE_PATTERNS = [
    # 00100 Helsinki / 84-054 Słupsk / 730 21 Mníšek pod Brdy / 7573 IG Zeerijp / H-1215 Tótfalva
    re.compile(
        rf"(?<![\w\-.])(?:(?:[A-Z]{{1,2}}-)?(?:\d{{5}}(?:-\d{{3}})?|\d{{2}}-\d{{3}}|\d{{3}}[ \t]\d{{2}}|"
        rf"\d{{4}}|\d{{8}}),?[ \t]+|\d{{4}}[ \t]?[A-Z]{{2}},?[ \t]*\n?[ \t]*){_CITY}"
    ),
    # Port Jason, GA 22322 / North Jessica, VIC, 2826 / Jaén, 36635 / Tadipatri-220033
    re.compile(
        rf"{_CITY}(?:,[ \t]*|[ \t]+(?=[A-Z]{{2,3}}\b))(?:[A-Z]{{2,3}},?[ \t]+)?\d{{4,5}}(?:-\d{{4}})?(?![\w\-])"
        rf"|{_CITY}[ \t]*[-,][ \t]*\d{{6}}(?!\d)"
    ),
    # [Clarketown\n] L3 2NP / Shay Ville D20 K9KH
    re.compile(
        rf"(?:{_CITY}(?:[ \t]*[,\n][ \t]*|[ \t]+))?(?<![\w])(?:{_UK_POST}|{_EIRCODE})(?![\w])"
    ),
]
_UNIT = re.compile(
    # a unit word standing alone ("rm" of "Permission" is none), then a number or a letter:
    # "Apt 4B", "Suite 300", "Unit G2", "Flat B" ("floor plan", "suite of tests" are none)
    rf"(?<![\w])(?i:apt\.?|apartment|suite|ste\.?|unit|flat|studio|floor|fl\.?|room|rm\.?|"
    rf"lgh\.?|piano|etage|stock|bldg\.?|building|block|h\.no\.?|house no\.?)[ \t]*#?[ \t]*"
    rf"(?:[A-Za-z]{{0,2}}\d[A-Za-z0-9\-]{{0,5}}|[A-Z](?![\w]))"
    rf"|\d{{1,2}}\.[ \t]*(?i:floor|etage|stock|piano|kerros|sal|tv\.?|th\.?)"
    rf"|c/o[ \t]+(?:{_CW}[ \t]*){{1,3}}|#[ \t]?\d{{1,5}}"
)
_CARE_OF = re.compile(rf"c/o[ \t]+(?:{_CW}[ \t]*){{1,3}}")
_GAP = re.compile(r"^[ \t]*(?:[,;|·•/\-][ \t]*)?(?:\n[ \t]*)?$")
_ADDRESS_CUE = re.compile(
    r"(?i)\b(?:address|ship(?:s|ped)? to|deliver(?:y)?(?: to)?|lives?|living|moved to|"
    r"located|resid|send it to|mail to|billing|shipping|recipient|i live at)\b"
)


def _windows(text: str, reach: int = 120) -> list[tuple[int, int]]:
    """Stretches of ``text`` around its digits: every address piece holds a digit (a house
    number, a postcode), so the patterns only run there (prose costs nothing)."""
    out: list[tuple[int, int]] = []
    for m in re.finditer(r"\d+", text):
        a = max(0, m.start() - reach)
        b = min(len(text), m.end() + reach)
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _scan(
    pattern: re.Pattern[str], text: str, windows: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    seen: set[tuple[int, int]] = set()
    for a, b in windows:
        for m in pattern.finditer(text, a, b):
            seen.add((m.start(), m.end()))
    return sorted(seen)


def _street_hits(text: str, windows: list[tuple[int, int]]) -> list[tuple[int, int, bool]]:
    """(start, end, strong): strong when a street word says so."""
    hits: list[tuple[int, int, bool]] = []
    for p in _STREET_PATTERNS[:2]:
        hits += [(s, e, True) for s, e in _scan(p, text, windows)]
    for a, b in windows:
        for m in _STREET_PATTERNS[2].finditer(text, a, b):
            head = m.group("head").casefold()
            if head.endswith(_STREET_ENDINGS) and (head[0] != m.group("head")[0] or len(head) > 3):
                hits.append((m.start(), m.end(), True))
    hits += [(s, e, False) for s, e in _scan(_BARE_STREET, text, windows)]
    return hits


def address_pieces(text: str) -> list[tuple[int, int, str]]:
    """(start, end, kind) of street (strong), weak street, postcode-and-city and unit pieces."""
    windows = _windows(text)
    if not windows:
        return [(m.start(), m.end(), "unit") for m in _CARE_OF.finditer(text)]
    pieces: list[tuple[int, int, str]] = []
    for s, e, strong in _street_hits(text, windows):
        pieces.append((s, e, "street" if strong else "weak"))
    for p in _POSTCODE_PATTERNS:
        pieces += [(s, e, "post") for s, e in _scan(p, text, windows)]
    pieces += [(m.start(), m.end(), "unit") for m in _UNIT.finditer(text)]
    return pieces


def find_addresses(text: str) -> list[Hit]:
    """Address blocks: street, optional unit lines, postcode and city (either order), joined
    across commas, bars and line breaks. A street with a street word alone scores 0.6; a
    postcode and city alone only after an address cue."""
    pieces = address_pieces(text)  # (start, end, kind): street | weak | post | unit
    pieces.sort(key=lambda x: (x[0], -x[1]))
    blocks: list[tuple[int, int, set[str]]] = []
    for s, e, kind in pieces:
        if blocks:
            bs, be, kinds = blocks[-1]
            if s < be or _GAP.match(text[be:s]):
                blocks[-1] = (bs, max(be, e), kinds | {kind})
                continue
        blocks.append((s, e, {kind}))
    out: list[Hit] = []
    for s, e, kinds in blocks:
        strong_street = "street" in kinds
        street = strong_street or "weak" in kinds
        post = "post" in kinds
        if street and post:
            score = 0.9
        elif strong_street:
            score = 0.65
        elif (post and (("unit" in kinds) or _ADDRESS_CUE.search(_line_before(text, s, 40)))) or (
            "weak" in kinds and "unit" in kinds
        ):
            score = 0.6
        else:
            continue
        # A block starts at its street or unit, never at a bare capitalised word before it.
        out.append((s, e, score))
    return out


# -- names --------------------------------------------------------------------------------
_NAME_TOKEN = rf"[{UP}][{LO}]+(?:['’\-][{UP}]?[{LO}]+)*"
_LOWER_TOKEN = rf"[{LO}]{{2,}}(?:['’\-][{LO}]+)*"
_NAME_PARTICLES = {"van", "von", "de", "der", "den", "da", "di", "du", "le", "la", "bin", "al"}
_STRONG_CUE = re.compile(
    r"(?i)(?:\bmy name is|\bmy name's|\bname is|\bi am|\bi'm|\bim|\bthis is|\bit's|\bit is|"
    r"\bcall me|\bcalls me|\bhi|\bhello|\bhey|\bdear|\bthanks|\bthank you|\bthx|\bcheers|"
    r"\bbye|\bok|\bokay|\bperfect|\bgot it|\bnoted|\bsorry(?: to hear that)?|\bwelcome|"
    r"\bspoke (?:with|to)|\btalked (?:with|to)|\bcall w/|\bcall with|\bmeeting with|\bmtg|"
    r"\bmet with|\bvoicemail for|\bquote to|\bcalls? from|\b(?:message|voicemail|e-?mail|"
    r"note|feedback|complaint) from|\buser|\bcustomer|\bclient|\bcaller|"
    r"\baccount of|\bname:|\bcontact:|\bcontact person:?|\battn:?|\bfrom:|\bto:|"
    r"\bof course|\bgood (?:morning|afternoon|evening)|\bhej|\bhallo|\bbonjour|\bciao|\bhola)"
    r"[ \t]*[,:\-]?[ \t]+$"
)
_CUE_SCAN = re.compile(_STRONG_CUE.pattern.removesuffix("$"))
_ROLE_CUE = re.compile(
    r"(?i)\b(?:user|customer|client|caller|account of|attn:?|from:|to:|contact:)[ \t]*[,:\-]?[ \t]+$"
)
# Cues that as often introduce a thing as a person: "it is data", "this is urgent".
_THING_CUE = re.compile(r"(?i)\b(?:it is|it's|this is)[ \t]*[,:\-]?[ \t]+$")
_NOT_NAME = frozenset(
    word_list("""team all everyone there sir madam guys folks both support agent customer client user
    visitor operator admin bot system today tomorrow yesterday again so much very the our
    your their this that monday tuesday wednesday thursday friday saturday sunday morning
    afternoon evening everybody friend friends colleagues sales billing hr it dev ops""")
)
# Lower-case words that follow "hi", "I'm", "this is" and are no names.
_COMMON_AFTER_CUE = frozenset(
    word_list("""new good great fine happy glad sure sorry back here there urgent important late early
    ready done about me again all everyone team guys broken wrong right correct true possible
    awesome perfect excellent nice cool bad still just really also very so too much more less
    only now then today tomorrow yesterday tonight morning afternoon evening night week month
    year time problem issue question order invoice account parcel package delivery payment
    refund card number phone email address bill charge calling writing looking trying waiting
    interested afraid not no yes ok okay well what why how when where who which whose your my
    our their his her its one two three first last next other another same different help
    support service customer client user agent manager owner admin someone somebody anyone
    nobody everybody thing things stuff way ticket case call mail message reply answer info
    regarding concerning following follow following up update quick short long big small""")
)
_ROLES = frozenset(
    word_list("""agent user customer support client visitor operator bot system assistant admin rep
    note notes subject from to cc re date tel phone fax email e-mail address summary profile
    ship deliver recipient billing references reference contact mobile direct""")
)
_SPEAKER = re.compile(
    rf"(?m)^[ \t]*(?:\[\d{{1,2}}:\d{{2}}(?::\d{{2}})?\][ \t]*)?((?:{_NAME_TOKEN}[ \t]+){{0,2}}{_NAME_TOKEN})"
    rf"(?:[ \t]*\(({_NAME_TOKEN})\))?[ \t]*:[ \t]"
)


def _take_name(text: str, pos: int, lower_ok: bool) -> tuple[int, int] | None:
    """The name starting at ``pos`` (after a cue): up to three name tokens on the line, all
    capitalised or all lower case."""
    tok = re.compile(rf"[ \t]*({_NAME_TOKEN}|{_LOWER_TOKEN})")
    end, count, cap, start = pos, 0, None, None
    while count < 3:
        m = tok.match(text, end)
        if not m:
            break
        word = m.group(1)
        low = word.casefold()
        if count and low in _NAME_PARTICLES:
            nxt = tok.match(text, m.end())
            if nxt and nxt.group(1)[0].isupper() == bool(cap):
                end = m.end()
                continue
            break
        is_cap = word[0].isupper()
        if cap is not None and is_cap != cap:
            break
        if low in STOP or low in _NOT_NAME or low in _ROLES or low in _COMMON_AFTER_CUE:
            break
        if _common_verb(word) or len(word) < 2 or (is_cap and len(word) < 3 and count == 0):
            break
        if not is_cap and not lower_ok:
            break
        cap = is_cap
        if start is None:
            start = m.start(1)
        end = m.end(1)
        count += 1
    if start is None:
        return None
    return start, end


_VERBISH = re.compile(r"(?i).*(?:ing|ed|ly|ies)$")


def _common_verb(word: str) -> bool:
    # "looking", "called": an English word with a verb's ending ("Erling" is a name).
    return bool(_VERBISH.match(word) and is_english(word)) or word.casefold() in {
        "said",
        "says",
        "wants",
        "asked",
        "here",
        "again",
        "please",
        "called",
        "will",
        "can",
    }


def find_cue_names(text: str) -> list[Hit]:
    """Names after a cue ("my name is aino", "Hi Jarek,", "spoke with Wojciech Zieliński"),
    before one ("Aino Virtanen here"), and chat speaker labels ("Aino Virtanen: ...")."""
    out: list[Hit] = []
    for cue in _CUE_SCAN.finditer(text):
        s = cue.end()
        if out and s < out[-1][1]:
            continue
        before = text[max(0, s - 40) : s]
        role = _ROLE_CUE.search(before) or _THING_CUE.search(before)
        got = _take_name(text, s, lower_ok=True)
        # After "customer", "user", "it is": a lower-case name only of words that are no
        # English words ("it is data only" names nobody; "this is aino" does).
        lower_english = bool(
            got
            and role
            and text[got[0]].islower()
            and any(is_english(w) for w in text[got[0] : got[1]].split())
        )
        if got and not lower_english:
            out.append((got[0], got[1], 0.9))
    for m in _SPEAKER.finditer(text):
        label, inner = m.group(1), m.group(2)
        words = label.split()
        if inner:
            out.append((m.start(2), m.end(2), 0.9))
        if any(w.casefold() in _ROLES or w.casefold() in _NOT_NAME for w in words):
            continue
        if len(words) == 1 and is_english(words[0]):
            continue
        out.append((m.start(1), m.end(1), 0.9))
    # "Aino Virtanen here" / "aino speaking"
    for m in re.finditer(
        rf"(?:^|[\n:.!?][ \t]*)((?:{_NAME_TOKEN}[ \t]+){{0,2}}{_NAME_TOKEN}|"
        rf"(?:{_LOWER_TOKEN}[ \t]+){{0,2}}{_LOWER_TOKEN})[ \t]+(?:here|speaking)\b",
        text,
    ):
        words = m.group(1).split()
        plain = all(
            w.casefold() not in STOP | _NOT_NAME | _ROLES | _COMMON_AFTER_CUE for w in words
        )
        if plain and any(w[0].isupper() or not is_english(w) for w in words):
            out.append((m.start(1), m.end(1), 0.9))
    return out


def find_proper_names(text: str, tokens: Any = None) -> list[Hit]:
    """Two to four capitalised words in a row, at least one of them no English word
    ("Aino Virtanen", "Nguyễn Thị Lan"), not a company ("Sørensen Gruppen"), not a street
    (followed by a house number), not after "the"/"in"; and all-capital lines of two or three
    such words (CV headers)."""
    out: list[Hit] = []
    word = rf"(?:{_NAME_TOKEN}|[{UP}]{{2,}}(?:-[{UP}]{{2,}})?)"
    for m in re.finditer(rf"(?<![\w\-.@])({word}(?:[ \t]+{word}){{1,3}})(?![\w@])", text):
        words = m.group(1).split()
        start, end = m.start(1), m.end(1)
        # Drop leading words that are English and capitalised only by position ("Thanks Aino").
        while words and (
            words[0].casefold() in STOP
            or words[0].casefold() in _NOT_NAME
            or words[0].casefold() in _ROLES
            or words[0].casefold() in _COMMON_AFTER_CUE
            or _common_verb(words[0])
        ):
            start = text.index(words[0], start) + len(words[0])
            start += len(text[start:]) - len(text[start:].lstrip(" \t"))
            words = words[1:]
        if len(words) < 2:
            continue
        low = [w.casefold().strip(".") for w in words]
        if any(company_word(w) for w in words) or any(w in _ROLES for w in low):
            continue
        if words[0].isupper() != words[-1].isupper():
            continue
        mixed = not all(w.isupper() for w in words)
        if mixed and any(w.isupper() and len(w) > 1 for w in words):
            continue  # an acronym in a title-case run: "Public API Rate Limits"
        foreign = sum(not is_english(w) for w in words)
        if not foreign or (len(words) >= 3 and foreign < len(words) - foreign):
            continue  # a heading: "Incident Response Runbook"
        after = text[end : end + 14]
        if re.match(
            r"[ \t]*(?:\d|(?:&|og|und|and|e|y|et)[ \t]+[A-Z]|"
            r",?[ \t]*(?:Inc|Ltd|LLC|GmbH|AG|AS|AB|Oy|BV|SA|SpA|Srl)\b)",
            after,
        ):
            continue
        prev = re.search(r"(\w+)[ \t]*$", text[max(0, start - 20) : start])
        if prev and prev.group(1).casefold() in DETERMINERS:
            continue
        if words[0].isupper():
            line_start = text.rfind("\n", 0, start) + 1
            line_end = text.find("\n", end)
            line = text[line_start : line_end if line_end >= 0 else len(text)]
            names = [w for w in words if w.casefold() not in _NAME_PARTICLES]
            if line.strip() != text[start:end] or len(names) > 3:
                continue
        out.append((start, end, 0.6))
    return out


# -- Presidio wrappers --------------------------------------------------------------------
class _FunctionRecognizer(EntityRecognizer):
    entity = ""
    name_ = ""

    def __init__(self) -> None:
        super().__init__(supported_entities=[self.entity], name=self.name_)

    def load(self) -> None:
        return None

    def find(self, text: str, nlp_artifacts: NlpArtifacts | None) -> list[Hit]:
        raise NotImplementedError

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        return [
            RecognizerResult(
                self.entity,
                s,
                e,
                score,
                analysis_explanation=AnalysisExplanation(
                    recognizer=self.name_, original_score=score
                ),
                recognition_metadata={
                    RecognizerResult.RECOGNIZER_NAME_KEY: self.name_,
                    RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                    # The scores here already weigh their context: Presidio must not add to them.
                    RecognizerResult.IS_SCORE_ENHANCED_BY_CONTEXT_KEY: True,
                },
            )
            for s, e, score in self.find(text, nlp_artifacts)
        ]


class LocalePhoneRecognizer(_FunctionRecognizer):
    """Phone numbers in any national or international format (:func:`find_phones`)."""

    entity, name_ = "PHONE_NUMBER", "LocalePhoneRecognizer"

    def find(self, text: str, nlp_artifacts: NlpArtifacts | None) -> list[Hit]:
        return find_phones(text)


class AnyGroupingCardRecognizer(_FunctionRecognizer):
    """Card numbers grouped any way (4-6-5, 8-8, none), Luhn-checked (:func:`find_cards`)."""

    entity, name_ = "CREDIT_CARD", "AnyGroupingCardRecognizer"

    def find(self, text: str, nlp_artifacts: NlpArtifacts | None) -> list[Hit]:
        return find_cards(text)


class AddressBlockRecognizer(_FunctionRecognizer):
    """Postal addresses in many countries' formats, across lines (:func:`find_addresses`)."""

    entity, name_ = "STREET_ADDRESS", "AddressBlockRecognizer"

    def find(self, text: str, nlp_artifacts: NlpArtifacts | None) -> list[Hit]:
        return find_addresses(text)


class NameRecognizer(_FunctionRecognizer):
    """Names spaCy small misses (:func:`find_cue_names`, :func:`find_proper_names`)."""

    entity, name_ = "PERSON", "NameRecognizer"

    def find(self, text: str, nlp_artifacts: NlpArtifacts | None) -> list[Hit]:
        return find_cue_names(text) + find_proper_names(text)


def multilocale_recognizers() -> list[EntityRecognizer]:
    return [
        LocalePhoneRecognizer(),
        AnyGroupingCardRecognizer(),
        AddressBlockRecognizer(),
        NameRecognizer(),
    ]
