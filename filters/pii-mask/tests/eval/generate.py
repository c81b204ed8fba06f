#!/usr/bin/env python3
"""Seeded generator of the pii-mask evaluation set (generated.jsonl).

Values come from Faker (PyPI `faker`, a test-only dependency: run this in a
private venv) in twelve locales, written into short sentences the way people
write them in prompts: with and without a word such as "call" before a phone
number, grouped and ungrouped card numbers and IBANs, cards next to an expiry
date and a CVV. Negatives are look-alikes that are not personal data: order
and invoice numbers, UUIDs, ISBNs, EAN barcodes, dates, times, prices,
versions, postcodes and tracking numbers.

Each line: {"source": "generated", "locale": ..., "entity": E or null,
"text": ..., "values": [...]}. The same seed gives the same file.

Usage: generate.py [--seed 13] [--per-entity 40] > generated.jsonl
"""
import argparse
import json
import random
import uuid

from faker import Faker

LOCALES = ["en_US", "en_GB", "fr_FR", "de_DE", "it_IT", "es_ES", "pt_BR", "nl_NL", "en_IN", "ja_JP", "pl_PL", "sv_SE"]

PHONE_TEMPLATES = [
    "Call me at {v}.",
    "You can reach {name} on {v} after 5pm.",
    "{name}, {v}, {city}",
    "Phone: {v}",
    "Please text {v} when you arrive.",
    "My number is {v} if anything changes.",
    "Contact details for {name}: {v} (mobile)",
]
EMAIL_TEMPLATES = [
    "Send the report to {v} please.",
    "{name} <{v}> wrote:",
    "my email is {v}",
    "Reply to {v}, not to the list.",
]
CARD_TEMPLATES = [
    "Card number {v}, expires {exp}.",
    "charge {v} exp {exp} cvv {cvv}",
    "Use my card {v} for the order.",
    "{v} {exp} {cvv}",
    "Paid with {v}",
]
SSN_TEMPLATES = ["SSN: {v}", "My social security number is {v}.", "{name} ({v}) applied."]
IP_TEMPLATES = ["Server at {v} is down.", "login from {v} failed", "allow {v} in the firewall", "[{v}]:443"]
IBAN_TEMPLATES = ["IBAN: {v}", "Please wire the money to {v} by Friday.", "Account {v} ({name})"]

# Real card groupings (issuer print formats).
CARD_TYPES = ["visa16", "visa13", "visa19", "mastercard", "amex", "discover", "jcb15", "jcb16", "diners", "maestro"]


def group(digits, sizes, sep):
    out, i = [], 0
    for size in sizes:
        out.append(digits[i : i + size])
        i += size
    if i < len(digits):
        out.append(digits[i:])
    return sep.join(p for p in out if p)


def card_value(fake, rnd):
    kind = rnd.choice(CARD_TYPES)
    number = fake.credit_card_number(card_type=kind)
    style = rnd.random()
    if style < 0.35:
        return number
    sep = " " if style < 0.75 else "-"
    if len(number) == 15 and number[0] == "3":
        return group(number, [4, 6, 5], sep)
    if len(number) == 14:
        return group(number, [4, 6, 4], sep)
    return group(number, [4, 4, 4, 4], sep)


def iban_value(fake, rnd):
    iban = fake.iban()
    style = rnd.random()
    if style < 0.5:
        return iban
    sep = " " if style < 0.85 else "-"
    return sep.join(iban[i : i + 4] for i in range(0, len(iban), 4))


def ssn_value(fake, rnd):
    ssn = fake.ssn()
    return ssn.replace("-", rnd.choice(["-", "-", " ", "."]))


def ip_value(fake, rnd):
    kind = rnd.random()
    if kind < 0.4:
        return fake.ipv4()
    if kind < 0.6:
        return fake.ipv4_private()
    if kind < 0.7:
        return fake.ipv4(network=True)
    if kind < 0.8:
        return "::ffff:" + fake.ipv4()
    return fake.ipv6()


def email_value(fake, rnd, locale):
    kind = rnd.random()
    if kind < 0.6:
        return fake.email()
    if kind < 0.8:
        return fake.free_email()
    # A local part in the person's own spelling (accents, kana, kanji).
    local = f"{fake.first_name()}.{fake.last_name()}".lower().replace(" ", "")
    return f"{local}@{fake.free_email_domain()}"


def negatives(fake, rnd):
    """Look-alikes that are not personal data."""
    n = rnd.randrange
    digits = lambda k: "".join(str(n(10)) for _ in range(k))
    return [
        f"Order {digits(3)}-{digits(7)}-{digits(7)} has shipped.",
        f"Invoice INV-{digits(6)} is due on {fake.date()}.",
        f"request id {uuid.UUID(int=rnd.getrandbits(128), version=4)}",
        f"ISBN {fake.isbn13()}",
        f"ISBN {fake.isbn10()}",
        f"EAN {fake.ean13()}",
        f"Meeting on {fake.date(pattern=rnd.choice(['%d.%m.%Y', '%Y-%m-%d', '%m/%d/%Y', '%d/%m/%Y']))} at {fake.time(pattern='%H:%M')}.",
        f"The total is {n(1, 999)}.{digits(2)} EUR for {n(1, 20)} items.",
        f"Upgrade to version {n(0, 20)}.{n(0, 30)}.{n(0, 200)} before {fake.date()}.",
        f"{fake.street_address()}, {fake.postcode()} {fake.city()}",
        f"Tracking 1Z{digits(16)}",
        f"Ticket #{digits(n(4, 9))} was closed.",
        f"Build {digits(8)}.{digits(4)} passed in {n(1, 60)}m{n(0, 60)}s.",
        f"Call at {fake.time(pattern='%H:%M:%S')} lasted {n(1, 50)} minutes.",
        fake.sentence(nb_words=12),
        f"Serial {digits(4)}-{digits(4)}-{digits(4)}",
        f"Population {n(1, 999)},{digits(3)},{digits(3)} in {n(1900, 2030)}",
    ]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--per-entity", type=int, default=40)
    args = parser.parse_args()
    rnd = random.Random(args.seed)
    Faker.seed(args.seed)
    for locale in LOCALES:
        fake = Faker(locale)
        fake.seed_instance(rnd.randrange(1 << 30))

        def emit(entity, template, value):
            text = template.format(
                v=value,
                name=fake.name(),
                city=fake.city(),
                exp=f"{rnd.randrange(1, 13):02d}/{rnd.randrange(25, 32)}",
                cvv=f"{rnd.randrange(1000):03d}",
            )
            print(json.dumps({"source": "generated", "locale": locale, "entity": entity, "text": text, "values": [value]}, ensure_ascii=False))

        for _ in range(args.per_entity):
            emit("PHONE_NUMBER", rnd.choice(PHONE_TEMPLATES), fake.phone_number())
            emit("EMAIL_ADDRESS", rnd.choice(EMAIL_TEMPLATES), email_value(fake, rnd, locale))
            emit("CREDIT_CARD", rnd.choice(CARD_TEMPLATES), card_value(fake, rnd))
            emit("IP_ADDRESS", rnd.choice(IP_TEMPLATES), ip_value(fake, rnd))
            emit("IBAN_CODE", rnd.choice(IBAN_TEMPLATES), iban_value(fake, rnd))
            if locale == "en_US":
                for _ in range(4):
                    emit("US_SSN", rnd.choice(SSN_TEMPLATES), ssn_value(fake, rnd))
        for _ in range(args.per_entity // 4):
            for text in negatives(fake, rnd):
                print(json.dumps({"source": "generated", "locale": locale, "entity": None, "text": text, "values": []}, ensure_ascii=False))


if __name__ == "__main__":
    main()
