#!/usr/bin/env python3
"""Reduces upstream CustomResourceDefinitions to the structural facts validate.py checks.

    python3 k8s/schemas/reduce.py OUT.json SOURCE-JSON CRD.yaml...

SOURCE-JSON names the upstream (repository, path, version, url). What is kept of each
openAPIV3Schema: field names (properties, items, additionalProperties), types, enums, required,
the anyOf/oneOf/allOf/not structure and the x-kubernetes-preserve-unknown-fields and
x-kubernetes-int-or-string markers. Descriptions, defaults, examples, patterns and bounds are
dropped. Only the groups validate.py checks are kept. This is a maintainer's tool: validate.py
reads the JSON it writes, never the upstream files.
"""

import json
import pathlib
import sys

import yaml

GROUPS = {
    "gateway.networking.k8s.io",
    "networking.istio.io",
    "traefik.io",
    "argoproj.io",
    "flagger.app",
    "monitoring.coreos.com",
}
KEEP = {
    "type",
    "enum",
    "required",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
}
NESTED = {"items", "not"}
LISTS = {"anyOf", "oneOf", "allOf"}


def reduce(schema):
    out = {}
    for key, value in schema.items():
        if key in KEEP:
            out[key] = value
        elif key == "properties":
            out[key] = {name: reduce(sub) for name, sub in value.items()}
        elif key == "additionalProperties":
            out[key] = reduce(value) if isinstance(value, dict) else value
        elif key in NESTED and isinstance(value, dict):
            out[key] = reduce(value)
        elif key in LISTS:
            out[key] = [reduce(sub) for sub in value]
    return out


def main(out, source, *crds):
    schemas = {}
    for path in crds:
        for doc in yaml.safe_load_all(pathlib.Path(path).read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
            if group not in GROUPS:
                continue
            for version in doc["spec"]["versions"]:
                schema = version.get("schema", {}).get("openAPIV3Schema")
                if schema:
                    schemas[f"{group}/{version['name']} {kind}"] = reduce(schema)
    document = {
        "upstream": json.loads(source),
        "schemas": dict(sorted(schemas.items())),
    }
    pathlib.Path(out).write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    print(f"{out}: {len(schemas)} schemas")


if __name__ == "__main__":
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
