#!/usr/bin/env python3
"""Presidio's figures on the pii-mask evaluation set (presidio_figures.json).

Runs Presidio's pattern recognizers for the same six entities directly (no
spaCy model: EmailRecognizer, PhoneRecognizer, CreditCardRecognizer,
UsSsnRecognizer, IpRecognizer, IbanRecognizer) over presidio_cases.jsonl and
generated.jsonl, at score threshold 0 (every result counts, as a guardrail
that masks on any hit would), and scores them exactly as tests/eval.rs
scores pii-mask:

- a positive value is found when a result of the case's entity covers it;
- a generated negative is a false positive when any result is returned;
  a Presidio negative when a result of its file's entity is returned.

Usage (in a private venv with presidio-analyzer installed):
    presidio_baseline.py > presidio_figures.json
"""
import json
import logging
import sys
from collections import defaultdict
from pathlib import Path

from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    PhoneRecognizer,
    UsSsnRecognizer,
)

# The e-mail recognizer's suffix-list download has no network here; the
# snapshot bundled with tldextract is used instead (quietly).
logging.getLogger("tldextract").setLevel(logging.CRITICAL)

HERE = Path(__file__).parent
RECOGNIZERS = {
    "EMAIL_ADDRESS": EmailRecognizer(),
    "PHONE_NUMBER": PhoneRecognizer(),
    "CREDIT_CARD": CreditCardRecognizer(),
    "US_SSN": UsSsnRecognizer(),
    "IP_ADDRESS": IpRecognizer(),
    "IBAN_CODE": IbanRecognizer(),
}


def results(text):
    found = []
    for entity, recognizer in RECOGNIZERS.items():
        for result in recognizer.analyze(text, [entity]) or []:
            found.append((result.entity_type, result.start, result.end))
    return found


def main():
    stats = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for name in ["presidio_cases.jsonl", "generated.jsonl"]:
        set_name = "presidio" if name.startswith("presidio") else "generated"
        for line in (HERE / name).read_text().splitlines():
            case = json.loads(line)
            text, entity, values = case["text"], case["entity"], case["values"]
            found = results(text)
            if values:
                for value in values:
                    start = text.find(value)
                    hit = any(e == entity and s <= start and start + len(value) <= t for e, s, t in found)
                    stats[set_name][entity][0] += int(hit)
                    stats[set_name][entity][1] += 1
            else:
                fp = any(e == entity for e, _, _ in found) if set_name == "presidio" else bool(found)
                stats[set_name]["NEGATIVE"][0] += int(fp)
                stats[set_name]["NEGATIVE"][1] += 1
    json.dump({s: {e: {"hit": v[0], "total": v[1]} for e, v in d.items()} for s, d in stats.items()}, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
