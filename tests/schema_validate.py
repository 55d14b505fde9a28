#!/usr/bin/python3
"""Validates JSON documents against JSON Schemas with an independent validator (the Debian
python3-jsonschema package), for test_json_schema: each input line is {"schema": ..., "text": ...};
the text must parse as JSON and validate (Draft 2020-12, formats checked). Exit 77 = skip."""
import json
import sys

try:
    import jsonschema
except ImportError:
    print("SKIP: python3-jsonschema is not installed")
    sys.exit(77)

import datetime
import re

# RFC 3339 time and date-time: python3-jsonschema checks them only with a package Debian lacks.
checker = jsonschema.draft202012_format_checker
RFC3339_TIME = re.compile(r"^\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


@checker.checks("time", raises=ValueError)
def _time(v):
    if not isinstance(v, str):
        return True
    if not RFC3339_TIME.match(v):
        return False
    datetime.time.fromisoformat(v.replace("Z", "+00:00"))
    return True


@checker.checks("date-time", raises=ValueError)
def _date_time(v):
    if not isinstance(v, str):
        return True
    d, sep, t = v.partition("T")
    if not sep or not _time(t):
        return False
    datetime.date.fromisoformat(d)
    return True


bad = 0
n = 0
for line in open(sys.argv[1], encoding="utf-8"):
    d = json.loads(line)
    n += 1
    try:
        inst = json.loads(d["text"])
        v = jsonschema.Draft202012Validator(d["schema"], format_checker=checker)
        v.validate(inst)
    except Exception as e:  # noqa: BLE001 - report every failure the same way
        bad += 1
        if bad <= 10:
            print("INVALID: %r: %s" % (d["text"], str(e).splitlines()[0]))
print("validated %d documents, %d invalid" % (n, bad))
sys.exit(1 if bad else 0)
