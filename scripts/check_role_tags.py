"""Translates template.yaml with SAM's own translator and checks that exactly
the functions that seal or open tokens (callback, refresh, both graph doors) get the
role tag TokenKey's policy asks for: a SAM change that stopped propagating
tags would lock them out of their key, one that tagged more would let
others in."""
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

TAG = "ig-connect-token-access"
WANT = {"CallbackFunctionRole", "RefreshFunctionRole", "GraphFunctionRole", "GraphHttpFunctionRole"}
# SAM also tags the roles it makes for those functions' events (the
# scheduler's role that invokes refresh): they hold no KMS permission in IAM,
# so the tag alone gives them nothing.
EVENT_ROLES = ("RefreshFunctionDailyRole",)


class NoManagedPolicies:
    def load(self):
        return {}


doc = yaml_parse(open("template.yaml").read())
for r in doc["Resources"].values():
    if r["Type"] == "AWS::Serverless::Function":
        r["Properties"]["CodeUri"] = "s3://bucket/key"  # translation only
out = transform(doc, {}, NoManagedPolicies())
tagged = set()
for rid, r in out["Resources"].items():
    if r["Type"] == "AWS::IAM::Role":
        tags = {t["Key"]: t["Value"] for t in r["Properties"].get("Tags", [])}
        if tags.get(TAG) == "true":
            tagged.add(rid)
if tagged - set(EVENT_ROLES) != WANT:
    sys.exit(f"roles tagged {TAG}: {sorted(tagged)}, want {sorted(WANT)}")
print(f"roles tagged {TAG}: {', '.join(sorted(tagged))}")
