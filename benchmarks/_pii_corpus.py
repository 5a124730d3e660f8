"""A labelled multi-locale PII corpus, generated at run time (benchmarks/pii_recall.py, pii_leaks.py).

Not the generator of benchmarks/pii_quality.py (one-sentence templates, mostly US values): here
Faker in 20 locales fills documents of the kinds support and sales teams keep — chat
transcripts (speaker labels, greetings, lower-case typing), e-mails with signature blocks, CV
headers, CRM call notes, shipping forms with multi-line addresses, security tickets — with
names (full, first name alone after the full one, lower case), phone numbers as the locale
writes them (trunk prefixes, extensions, labels such as "-Office", short local numbers),
postal addresses in the locale's format across one or several lines (unit lines such as
"Apt. 12"), e-mail addresses, card numbers grouped in several ways, IBANs, US SSNs and IP
addresses; and ordinary text around them (order numbers, dates, versions, amounts, company and
city names) that must not be flagged.

Every value is a character-span label ``(start, end, category, value)``. Documents carry a
``half``: ``tune`` (even index) or ``heldout`` (odd), and each half draws its phrasings from a
disjoint half of every phrase pool, so the held-out half has sentence shapes tuning never saw.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CATEGORIES", "LOCALES", "Doc", "generate"]

CATEGORIES = ("person", "phone", "email", "address", "card", "iban", "ssn", "ip")

# Latin-script locales (the detectors are English-language models reading English text that
# quotes foreign names and addresses, as a European support desk's does).
LOCALES = [
    "en_US",
    "en_GB",
    "en_IE",
    "en_AU",
    "en_IN",
    "de_DE",
    "de_AT",
    "fr_FR",
    "es_ES",
    "it_IT",
    "nl_NL",
    "pl_PL",
    "fi_FI",
    "sv_SE",
    "da_DK",
    "no_NO",
    "pt_BR",
    "cs_CZ",
    "hu_HU",
    "vi_VN",
]
IBAN_LOCALES = ["de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pl_PL", "fi_FI", "en_GB", "pt_BR"]


@dataclass
class Doc:
    id: str
    kind: str
    half: str
    locale: str
    text: str
    spans: list[tuple[int, int, str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "half": self.half,
            "locale": self.locale,
            "text": self.text,
            "spans": [list(s) for s in self.spans],
        }


class _Builder:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.spans: list[tuple[int, int, str, str]] = []
        self.n = 0

    def t(self, text: str) -> _Builder:
        self.parts.append(text)
        self.n += len(text)
        return self

    def v(self, value: str, category: str) -> _Builder:
        self.spans.append((self.n, self.n + len(value), category, value))
        return self.t(value)

    def text(self) -> str:
        return "".join(self.parts)


@dataclass
class _Person:
    first: str
    last: str
    full: str
    call: str  # what a colleague calls them: the first name (the given name in Vietnamese)
    locale: str


class _Values:
    """Faker values for one locale (and a few written by hand the way people type them)."""

    def __init__(self, fakers: dict[str, Any], rng: random.Random):
        self.fakers = fakers
        self.rng = rng

    def person(self, loc: str) -> _Person:
        f = self.fakers[loc]
        if loc == "vi_VN":
            full = f.name()
            words = full.split()
            return _Person(words[0], words[-1], full, words[-1], loc)
        first, last = f.first_name(), f.last_name()
        full = f"{first} {last}"
        if self.rng.random() < 0.08:
            full = f"{first} {f.first_name()} {last}"
        return _Person(first, last, full, first, loc)

    def phone(self, loc: str) -> str:
        f = self.fakers[loc]
        r = self.rng.random()
        if r < 0.55:
            return str(f.phone_number())
        if r < 0.7:
            # a short local number, as written after "call me on"
            a, b = self.rng.randint(200, 989), self.rng.randint(0, 9999)
            return self.rng.choice([f"{a} {b:04d}", f"{a}-{b:04d}", f"{a}{b:04d}"])
        if r < 0.85:
            base = str(f.phone_number()).split("x")[0]
            ext = self.rng.randint(2, 9999)
            return base + self.rng.choice([f" x{ext}", f" ext. {ext}", f" ext {ext}", f"x{ext}"])
        digits = "".join(str(self.rng.randint(0, 9)) for _ in range(8))
        return self.rng.choice(
            [
                f"0{self.rng.randint(4, 9)}{digits[:2]} {digits[2:4]} {digits[4:6]} {digits[6:8]}",
                f"0{digits[:3]}/{digits[3:]}",
                f"+{self.rng.randint(30, 49)} ({self.rng.randint(1, 9)}) {digits[:3]} {digits[3:]}",
                f"0{self.rng.randint(1, 9)}{digits[:1]}-{digits[1:4]} {digits[4:]}",
            ]
        )

    def email(self, loc: str, person: _Person | None) -> str:
        f = self.fakers[loc]
        if person is not None and self.rng.random() < 0.5:
            local = _ascii(
                self.rng.choice(
                    [
                        f"{person.first}.{person.last}",
                        f"{person.first[0]}{person.last}",
                        f"{person.first}_{person.last[0]}",
                        f"{person.first}{self.rng.randint(1, 99)}",
                    ]
                )
            ).lower()
            local = re.sub(r"[^a-z0-9._-]", "", local) or "info"
            return f"{local}@{self.rng.choice([f.free_email_domain(), f.domain_name()])}"
        return str(self.rng.choice([f.free_email(), f.company_email(), f.email()]))

    def address_lines(self, loc: str) -> list[str]:
        f = self.fakers[loc]
        lines = [ln.strip() for ln in str(f.address()).splitlines() if ln.strip()]
        if len(lines) == 1 and "," in lines[0] and self.rng.random() < 0.5:
            lines = [p.strip() for p in lines[0].split(",") if p.strip()]
        if self.rng.random() < 0.3:
            unit = self.rng.choice(
                [
                    f"Apt. {self.rng.randint(1, 99)}",
                    f"Suite {self.rng.randint(100, 999)}",
                    f"Flat {self.rng.randint(1, 40)}",
                    f"Unit {self.rng.randint(1, 60)}{self.rng.choice(['', 'B'])}",
                    f"{self.rng.randint(1, 9)}. floor",
                    f"c/o {f.last_name()}",
                ]
            )
            lines.insert(1, unit)
        return lines

    def card(self) -> str:
        f = self.fakers["en_US"]
        kind = self.rng.choice(
            ["visa16", "visa16", "mastercard", "mastercard", "amex", "discover", "visa13"]
        )
        n = str(f.credit_card_number(card_type=kind))
        sep = self.rng.choice([" ", " ", "-", ""])
        if not sep:
            return n
        if len(n) == 15:
            groups = self.rng.choice([[4, 6, 5], [4, 4, 4, 3], [5, 5, 5]])
        elif len(n) == 16:
            groups = self.rng.choice([[4, 4, 4, 4], [4, 4, 4, 4], [4, 6, 6], [8, 8], [2, 4, 4, 6]])
        else:
            groups = self.rng.choice([[4, 4, 5], [4, 3, 3, 3]])
        out, pos = [], 0
        for g in groups:
            out.append(n[pos : pos + g])
            pos += g
        if pos < len(n):
            out.append(n[pos:])
        return sep.join(out)

    def iban(self) -> str:
        loc = self.rng.choice(IBAN_LOCALES)
        v = str(self.fakers[loc].iban())
        if self.rng.random() < 0.5:
            v = " ".join(v[i : i + 4] for i in range(0, len(v), 4))
        return v

    def ssn(self) -> str:
        v = str(self.fakers["en_US"].ssn())
        return v if self.rng.random() < 0.8 else v.replace("-", " ")

    def ip(self) -> str:
        f = self.fakers["en_US"]
        r = self.rng.random()
        return str(f.ipv4_public() if r < 0.6 else f.ipv6() if r < 0.8 else f.ipv4_private())

    def company(self, loc: str) -> str:
        return str(self.fakers[loc].company())

    def city(self, loc: str) -> str:
        return str(self.fakers[loc].city())


def _ascii(text: str) -> str:
    import unicodedata

    out = unicodedata.normalize("NFKD", text.replace("ł", "l").replace("Ł", "L"))
    return "".join(c for c in out if not unicodedata.combining(c))


# -- ordinary text that must not be flagged ---------------------------------------------------
def _noise(rng: random.Random, v: _Values, loc: str) -> str:
    order = rng.randint(10000, 999999)
    return rng.choice(
        [
            f"Order #{order} shipped on 2024-0{rng.randint(1, 9)}-{rng.randint(10, 28)}.",
            f"Ticket INC-{order} is in the {rng.choice(['billing', 'logistics', 'returns'])} queue.",
            f"Total {rng.randint(10, 4000)},{rng.randint(10, 99)} EUR incl. VAT, due in 30 days.",
            f"Running version {rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)} of the app.",
            f"The {v.city(loc)} warehouse handles returns for {v.company(loc)}.",
            f"Meeting moved to {rng.randint(9, 17)}:{rng.choice(['00', '15', '30', '45'])} on Thursday.",
            f"Contract {rng.randint(1000, 9999)}/{rng.randint(2019, 2025)} renews every 12 months.",
            f"Reference number {order}-{rng.randint(10, 99)}; keep it for the claim.",
            f"Our {v.city(loc)} office closes at 17:00 on Fridays.",
            f"SKU {rng.randint(100, 999)}-{rng.randint(1000, 9999)} is back in stock (qty {rng.randint(2, 80)}).",
        ]
    )


# -- the document kinds -----------------------------------------------------------------------
# Each pool's phrasings are split between the halves: even positions for tune, odd for heldout.
def _pick(rng: random.Random, pool: list[str], half: str) -> str:
    mine = pool[0::2] if half == "tune" else pool[1::2]
    return rng.choice(mine or pool)


def _fill(b: _Builder, template: str, slots: dict[str, tuple[str, str | None]]) -> None:
    """``template`` with ``{slot}`` markers: a slot is (text, category or None)."""
    pos = 0
    for m in re.finditer(r"\{(\w+)\}", template):
        b.t(template[pos : m.start()])
        value, category = slots[m.group(1)]
        if category:
            b.v(value, category)
        else:
            b.t(value)
        pos = m.end()
    b.t(template[pos:])


def _address(b: _Builder, lines: list[str], sep: str) -> None:
    b.v(sep.join(lines), "address")


def _chat(rng: random.Random, v: _Values, loc: str, half: str) -> _Builder:
    p = v.person(loc)
    agent = v.person(rng.choice(LOCALES))
    lower = rng.random() < 0.35
    user_label = _pick(rng, ["User", "Customer", p.full, "Visitor", "Client", p.first], half)
    agent_label = _pick(rng, ["Agent", "Support", f"Agent ({agent.first})", "Operator"], half)
    b = _Builder()
    stamp = f"[{rng.randint(8, 19):02d}:{rng.randint(0, 59):02d}] " if rng.random() < 0.5 else ""

    def speaker(label: str) -> None:
        b.t(stamp)
        if label in (p.full, p.first):
            b.v(label, "person")
        elif agent.first in label:
            b.t(label[: label.index(agent.first)]).v(agent.first, "person").t(")")
        else:
            b.t(label)
        b.t(": ")

    speaker(agent_label)
    b.t(_pick(rng, ["Hello, how can I help you today?", "Hi there! What can I do for you?",
                    "Welcome to support, how can I help?", "Good morning, thanks for waiting."],
              half))  # fmt: skip
    b.t("\n")
    speaker(user_label)
    name = p.full.lower() if lower else p.full
    _fill(
        b,
        _pick(
            rng,
            [
                "hi, my name is {name} and my parcel never arrived",
                "hello this is {name}, i have a problem with my bill",
                "{name} here. the invoice is wrong again",
                "Hi, I'm {name}. My order is missing an item.",
                "good morning, {name} speaking, question about my refund",
                "hey it's {name} - still waiting for the replacement",
            ],
            half,
        ),
        {"name": (name, "person")},
    )
    b.t("\n")
    speaker(agent_label)
    _fill(
        b,
        _pick(
            rng,
            [
                "Thanks {first}, can you confirm your phone number?",
                "Hi {first}! Could you give me a number to call you back?",
                "Sorry to hear that, {first}. What is the best phone number for you?",
                "Of course {first}, which number should the courier call?",
            ],
            half,
        ),
        {"first": (p.call.lower() if lower and rng.random() < 0.3 else p.call, "person")},
    )
    b.t("\n")
    speaker(user_label)
    phone = v.phone(loc)
    _fill(
        b,
        _pick(
            rng,
            [
                "call me on {phone}",
                "you can reach me at {phone} after 5pm",
                "{phone} (mobile)",
                "my cell is {phone}",
                "it's {phone}, office hours only",
                "try {phone} or email",
            ],
            half,
        ),
        {"phone": (phone, "phone")},
    )
    if rng.random() < 0.5:
        b.t(" or ").v(v.email(loc, p), "email")
    b.t("\n")
    if rng.random() < 0.7:
        speaker(agent_label)
        b.t(_pick(rng, ["And the delivery address?", "Which address should we use?",
                        "Can you confirm the shipping address?", "Where should we send it?"],
                  half))  # fmt: skip
        b.t("\n")
        speaker(user_label)
        lines = v.address_lines(loc)
        b.t(_pick(rng, ["", "it's ", "ship to ", "i live at "], half))
        _address(b, lines, rng.choice([", ", "\n", " "]))
        b.t("\n")
    if rng.random() < 0.35:
        speaker(user_label)
        b.t(_pick(rng, ["charge the card ", "use my card ", "card number is ", "pay with "], half))
        b.v(v.card(), "card").t("\n")
    speaker(agent_label)
    b.t(_pick(rng, ["Thanks, ", "Perfect, ", "Got it, ", "Noted, "], half))
    b.v(p.call.lower() if lower and rng.random() < 0.5 else p.call, "person")
    b.t(". " + _noise(rng, v, loc) + "\n")
    return b


def _email(rng: random.Random, v: _Values, loc: str, half: str) -> _Builder:
    to = v.person(rng.choice(LOCALES))
    me = v.person(loc)
    b = _Builder()
    b.t(_pick(rng, ["Hi ", "Dear ", "Hello ", "Hej ", "Good afternoon "], half))
    b.v(to.call if rng.random() < 0.7 else to.full, "person").t(",\n\n")
    b.t(_noise(rng, v, loc) + " ")
    _fill(
        b,
        _pick(
            rng,
            [
                "As discussed, {name} from our side will follow up next week.",
                "I have copied {name}, who now owns the account.",
                "Please send the signed copy to {name} as well.",
                "{name} approved the change this morning.",
            ],
            half,
        ),
        {"name": (v.person(loc).full, "person")},
    )
    b.t("\n\n")
    b.t(_pick(rng, ["Best regards,", "Kind regards,", "Cheers,", "Thanks,", "Regards,",
                    "Mit freundlichen Grüßen,", "Cordialement,", "Pozdrawiam,"], half))  # fmt: skip
    b.t("\n")
    b.v(me.full, "person").t("\n")
    b.t(f"{v.fakers[loc].job()}, {v.company(loc)}\n")
    tel = _pick(rng, ["Tel: ", "Tel. ", "T ", "Phone: ", "Mobile: ", "M: ", "Direct "], half)
    b.t(tel).v(v.phone(loc), "phone")
    if rng.random() < 0.4:
        b.t(_pick(rng, [" | Fax: ", "\nFax ", " / fax ", "\nF: "], half)).v(v.phone(loc), "phone")
    b.t("\n")
    if rng.random() < 0.75:
        _address(b, v.address_lines(loc), rng.choice(["\n", ", ", " | "]))
        b.t("\n")
    if rng.random() < 0.25:
        b.t(_pick(rng, ["Bank details: IBAN ", "IBAN: ", "Account (IBAN) ", "Pay to "], half))
        b.v(v.iban(), "iban").t("\n")
    b.v(v.email(loc, me), "email").t("\n")
    return b


def _cv(rng: random.Random, v: _Values, loc: str, half: str) -> _Builder:
    p = v.person(loc)
    b = _Builder()
    b.v(p.full.upper() if rng.random() < 0.4 else p.full, "person").t("\n")
    seps = _pick(rng, [" · ", " | ", "\n", " • ", " - "], half)
    lines = v.address_lines(loc)
    _address(b, lines, ", ")
    b.t(seps).v(v.phone(loc), "phone").t(seps).v(v.email(loc, p), "email").t("\n\n")
    b.t(_pick(rng, ["PROFILE\n", "Summary\n", "About me\n", "PERSONAL STATEMENT\n"], half))
    _fill(
        b,
        _pick(
            rng,
            [
                "{job} with 8 years at {company}. Based in {city}, open to relocation.",
                "Experienced {job}; previously {company}, {city}.",
                "{job} looking for a new role. Languages: English, German.",
                "Currently {job} at {company} ({city} office).",
            ],
            half,
        ),
        {
            "job": (str(v.fakers[loc].job()), None),
            "company": (v.company(loc), None),
            "city": (v.city(loc), None),
        },
    )
    b.t("\nReferences: ")
    ref = v.person(rng.choice(LOCALES))
    b.v(ref.full, "person").t(", ").v(v.phone(rng.choice(LOCALES)), "phone").t("\n")
    return b


def _crm(rng: random.Random, v: _Values, loc: str, half: str) -> _Builder:
    p = v.person(loc)
    b = _Builder()
    b.t(f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} ")
    _fill(
        b,
        _pick(
            rng,
            [
                "call w/ {name} re invoice {order}. ",
                "Spoke with {name} about renewal. ",
                "Inbound call from {name} ({company}). ",
                "mtg {name} - pricing questions. ",
                "Left voicemail for {name}. ",
                "{name} complained about delivery. ",
            ],
            half,
        ),
        {
            "name": (p.full.lower() if rng.random() < 0.2 else p.full, "person"),
            "order": (str(rng.randint(10000, 99999)), None),
            "company": (v.company(loc), None),
        },
    )
    phone = v.phone(loc)
    _fill(
        b,
        _pick(
            rng,
            [
                "cb {phone}. ",
                "Callback on {phone} tomorrow. ",
                "prefers phone: {phone}. ",
                "tel {phone}. ",
                "New number {phone}. ",
                "reach at {phone}. ",
            ],
            half,
        ),
        {"phone": (phone, "phone")},
    )
    _fill(
        b,
        _pick(
            rng,
            [
                "{first} wants a discount. ",
                "{first} will decide by Friday. ",
                "Sent quote to {first}. ",
                "{first} asked for the contract in PDF. ",
            ],
            half,
        ),
        {"first": (p.call.lower() if rng.random() < 0.2 else p.call, "person")},
    )
    r = rng.random()
    if r < 0.3:
        b.t(_pick(rng, ["Refund to IBAN ", "iban: ", "Pays from account ", "Bank: "], half))
        b.v(v.iban(), "iban").t(". ")
    elif r < 0.5:
        b.t(_pick(rng, ["card on file ", "Card: ", "paid w/ ", "charged "], half))
        b.v(v.card(), "card").t(". ")
    elif r < 0.65:
        b.t(_pick(rng, ["SSN ", "ssn: ", "Social Security no. ", "SSN on form: "], half))
        b.v(v.ssn(), "ssn").t(". ")
    if rng.random() < 0.5:
        b.t(_pick(rng, ["Moved to ", "New address: ", "Ships to ", "Billing address "], half))
        _address(b, v.address_lines(loc), ", ")
        b.t(". ")
    if rng.random() < 0.4:
        b.t(_pick(rng, ["Email ", "mail: ", "Prefers email at ", "cc "], half))
        b.v(v.email(loc, p), "email").t(". ")
    b.t(_noise(rng, v, loc))
    return b


def _shipping(rng: random.Random, v: _Values, loc: str, half: str) -> _Builder:
    p = v.person(loc)
    b = _Builder()
    b.t(_pick(rng, ["Ship to:\n", "DELIVERY ADDRESS\n", "Recipient\n", "Deliver to:\n"], half))
    b.v(p.full, "person").t("\n")
    _address(b, v.address_lines(loc), "\n")
    b.t("\n")
    if rng.random() < 0.6:
        b.t(_pick(rng, ["Phone: ", "Tel ", "Contact no. ", "Mobile "], half)).v(
            v.phone(loc), "phone"
        )
        b.t("\n")
    b.t(_noise(rng, v, loc) + "\n")
    if rng.random() < 0.5:
        b.t(_pick(rng, ["Billing: same as above, card ", "Paid by card ", "Card used: ",
                        "Payment card "], half))  # fmt: skip
        b.v(v.card(), "card").t("\n")
    elif rng.random() < 0.4:
        b.t(_pick(rng, ["Refunds to IBAN ", "COD refund account: ", "Return credit to ",
                        "Bank account "], half))  # fmt: skip
        b.v(v.iban(), "iban").t("\n")
    return b


def _ticket(rng: random.Random, v: _Values, loc: str, half: str) -> _Builder:
    p = v.person(loc)
    b = _Builder()
    _fill(
        b,
        _pick(
            rng,
            [
                "Security ticket: repeated failed logins for {name} from {ip}",
                "Alert - account of {name} accessed from {ip}",
                "Suspicious sign-in ({ip}) on the account of {name}",
                "Login anomaly: {ip}, user {name}",
            ],
            half,
        ),
        {"name": (p.full, "person"), "ip": (v.ip(), "ip")},
    )
    b.t(" and ").v(v.ip(), "ip").t(". ")
    _fill(
        b,
        _pick(
            rng,
            [
                "Identity check: SSN {ssn}, callback {phone}. ",
                "Verified with ssn {ssn}; phone on file {phone}. ",
                "Caller gave SSN {ssn} and number {phone}. ",
                "KYC: {ssn} / {phone}. ",
            ],
            half,
        ),
        {"ssn": (v.ssn(), "ssn"), "phone": (v.phone(loc), "phone")},
    )
    b.t(_pick(rng, ["Password reset sent to ", "Notified ", "Mail sent to ", "Contact: "], half))
    b.v(v.email(loc, p), "email").t(". ")
    b.v(p.call, "person").t(_pick(rng, [" confirmed it was not them.", " was travelling.",
                                        " says the device was lost.", " has been informed."],
                                  half))  # fmt: skip
    b.t(" " + _noise(rng, v, loc))
    return b


KINDS = {
    "chat": _chat,
    "email": _email,
    "cv": _cv,
    "crm": _crm,
    "shipping": _shipping,
    "ticket": _ticket,
}


def generate(n: int, seed: int) -> list[Doc]:
    """``n`` documents; even indices the ``tune`` half, odd ones ``heldout``."""
    from faker import Faker

    rng = random.Random(seed)
    fakers = {}
    for i, loc in enumerate(LOCALES):
        f = Faker(loc)
        f.seed_instance(seed * 101 + i)
        fakers[loc] = f
    values = _Values(fakers, rng)
    kinds = list(KINDS)
    docs = []
    for i in range(n):
        half = "tune" if i % 2 == 0 else "heldout"
        kind = kinds[(i // 2) % len(kinds)]
        loc = LOCALES[(i * 7 + i // 2) % len(LOCALES)]
        b = KINDS[kind](rng, values, loc, half)
        docs.append(Doc(f"{kind}-{i}", kind, half, loc, b.text(), b.spans))
    return docs


if __name__ == "__main__":  # a look at a few documents
    import sys

    for d in generate(int(sys.argv[1]) if len(sys.argv) > 1 else 6, 7):
        print(f"--- {d.id} {d.locale} {d.half}\n{d.text}")
        for s in d.spans:
            print("   ", s[2], repr(s[3]))
