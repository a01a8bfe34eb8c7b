#!/usr/bin/env python3
"""Copy the botocore service models Berth is built against into crates/berth-api/model/.

Documentation strings are dropped (they are most of the bytes and the generated code does not use
them); everything else is kept as botocore ships it. Run `cargo xtask codegen` afterwards.
Usage: python3 xtask/vendor_models.py   (needs `pip install botocore==<version>`)
"""
import gzip
import json
import os
import sys

import botocore

SERVICES = [
    ("ecs", "2014-11-13"),
    ("logs", "2014-03-28"),
    ("application-autoscaling", "2016-02-06"),
    ("cloudwatch", "2010-08-01"),
    ("secretsmanager", "2017-10-17"),
]


def strip(value):
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k != "documentation"}
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out_dir = os.path.join(root, "crates", "berth-api", "model")
    data = os.path.join(os.path.dirname(botocore.__file__), "data")
    for service, version in SERVICES:
        path = os.path.join(data, service, version, "service-2.json.gz")
        with gzip.open(path) as f:
            model = strip(json.load(f))
        model["metadata"]["botocoreVersion"] = botocore.__version__
        with open(os.path.join(out_dir, f"{service}.json"), "w") as f:
            json.dump(model, f, indent=1, sort_keys=True)
            f.write("\n")
        print(f"{service}: {len(model['operations'])} operations, {len(model['shapes'])} shapes", file=sys.stderr)


if __name__ == "__main__":
    main()
