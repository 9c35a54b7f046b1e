"""Verdicts of the official Score JSON schema on YAML files (the test oracle).

Usage: score_oracle.py SCHEMA FILE...  -> prints {"FILE": true|false, ...}
"""
import json
import sys

import jsonschema
import yaml

schema = json.load(open(sys.argv[1]))
validator = jsonschema.Draft202012Validator(schema)
verdicts = {}
for path in sys.argv[2:]:
    with open(path) as f:
        doc = yaml.safe_load(f)
    verdicts[path] = validator.is_valid(doc)
print(json.dumps(verdicts))
