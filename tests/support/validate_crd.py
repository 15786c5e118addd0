#!/usr/bin/env python3
"""Validate manifests against a CustomResourceDefinition's openAPIV3Schema, as an API server
with strict field validation does: the schema's defaults applied first, unknown fields refused
(unless the schema preserves them), `nullable` honoured, int-or-string accepted.

Usage: validate_crd.py CRD.yaml VERSION MANIFEST.json...   (exit 1 and the errors if any fails)
"""
import copy
import json
import sys

import jsonschema
import yaml


def strict(schema):
    s = copy.deepcopy(schema)

    def walk(node):
        if not isinstance(node, dict):
            return
        if node.get("nullable") and "type" in node:
            node["type"] = [node["type"], "null"]
        if node.get("x-kubernetes-int-or-string") and "type" not in node and "anyOf" not in node:
            node["type"] = ["integer", "string"]
        if "properties" in node and "additionalProperties" not in node \
                and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
        for key in ("properties", "patternProperties"):
            for child in node.get(key, {}).values():
                walk(child)
        for key in ("items", "additionalProperties", "not"):
            walk(node.get(key))
        for key in ("anyOf", "allOf", "oneOf"):
            for child in node.get(key, []):
                walk(child)

    walk(s)
    return s


def defaults(schema, value):
    """The schema's defaults filled into `value`, as the API server does before validating."""
    if isinstance(value, dict) and isinstance(schema, dict):
        for name, sub in schema.get("properties", {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                defaults(sub, value[name])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name in value:
                if name not in schema.get("properties", {}):
                    defaults(extra, value[name])
    elif isinstance(value, list) and isinstance(schema, dict) and isinstance(schema.get("items"), dict):
        for item in value:
            defaults(schema["items"], item)
    return value


def main():
    crd_path, version, *manifests = sys.argv[1:]
    with open(crd_path) as f:
        crd = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    kind = crd["spec"]["names"]["kind"]
    group = crd["spec"]["group"]
    schema = next(v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"] if v["name"] == version)
    validator = jsonschema.Draft7Validator(strict(schema))
    failed = False
    for path in manifests:
        with open(path) as f:
            obj = json.load(f)
        if obj.get("apiVersion") != f"{group}/{version}" or obj.get("kind") != kind:
            print(f"{path}: not a {group}/{version} {kind}")
            failed = True
            continue
        obj = defaults(schema, obj)
        errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.path))
        for e in errors:
            print(f"{path}: {'.'.join(str(p) for p in e.path) or '(root)'}: {e.message}")
        failed = failed or bool(errors)
    if not failed:
        print(f"{len(manifests)} manifest(s) valid against {kind} {group}/{version}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
