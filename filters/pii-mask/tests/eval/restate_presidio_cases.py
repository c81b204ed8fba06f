#!/usr/bin/env python3
"""Restates Presidio's recognizer test cases as data (presidio_cases.jsonl).

The inputs and expected spans of Presidio's own unit tests for the entities
pii-mask also detects are facts about what those recognizers should find. This
script reads them from a Presidio checkout (`git clone
https://github.com/microsoft/presidio`) with `ast` (nothing is executed) and
writes one JSON object per case:

    {"source": "presidio/<test file>", "entity": "...", "text": "...", "values": ["..."]}

`values` are the expected matched substrings (empty: the text is a negative).
A case whose expected count is 1 but that gives no positions expects the whole
text. Phone cases with a `leniency` parameter are left out (they test a
libphonenumber option, not what should be found).

Usage: restate_presidio_cases.py <presidio checkout> > presidio_cases.jsonl
"""
import ast
import json
import sys
from pathlib import Path

FILES = {
    "test_email_recognizer.py": "EMAIL_ADDRESS",
    "test_phone_recognizer.py": "PHONE_NUMBER",
    "test_credit_card_recognizer.py": "CREDIT_CARD",
    "test_us_ssn_recognizer.py": "US_SSN",
    "test_ip_recognizer.py": "IP_ADDRESS",
    "test_iban_recognizer.py": "IBAN_CODE",
}

POSITION_NAMES = ("expected_positions", "expected_res")


def literal(node):
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None


def cases(path: Path, entity: str):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or getattr(node.func, "attr", None) != "parametrize":
            continue
        names = [n.strip() for n in literal(node.args[0]).split(",")]
        if "leniency" in names:
            continue
        rows = node.args[1]
        if not isinstance(rows, ast.List):
            continue
        for row in rows.elts:
            values = [literal(elt) for elt in row.elts]
            fields = dict(zip(names, values))
            text = fields.get("text", fields.get("iban"))
            count = fields.get("expected_len")
            positions = next((fields[n] for n in POSITION_NAMES if n in fields), ())
            if text is None or count is None:
                continue
            if count and not positions:
                positions = ((0, len(text)),)
            spans = [text[start:end] for start, end in (positions or ())][:count]
            yield {"source": f"presidio/{path.name}", "entity": entity, "text": text, "values": spans}


def main():
    tests = Path(sys.argv[1]) / "presidio-analyzer" / "tests"
    for name, entity in FILES.items():
        for case in cases(tests / name, entity):
            print(json.dumps(case, ensure_ascii=False))


if __name__ == "__main__":
    main()
