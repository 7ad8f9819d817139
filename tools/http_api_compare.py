#!/usr/bin/env python3
"""Runs the same management-API requests against two brokers (RabbitMQ 3.10 with its
management plugin, and Warren) and prints where their status codes or bodies differ.

    python3 tools/http_api_compare.py http://127.0.0.1:15704 http://127.0.0.1:15672

Both must have the administrator `guest`/`guest` and the vhost `/`. Each request's
answer is shown as `status body`; bodies of lists and objects are compared by their
field names (values such as hashes and versions differ by nature), errors in full.
Objects the script makes are named `cmp-*` and deleted at the end."""
import base64
import json
import sys
import urllib.error
import urllib.request

CASES = [
    # (name, method, path, body, user)
    ("no credentials", "GET", "/api/whoami", None, None),
    ("wrong password", "GET", "/api/whoami", None, ("guest", "nope")),
    ("unknown user", "GET", "/api/whoami", None, ("cmp-nobody", "x")),
    ("whoami", "GET", "/api/whoami", None, "guest"),
    ("overview", "GET", "/api/overview", None, "guest"),
    ("vhost create", "PUT", "/api/vhosts/cmp-v", {"description": "d", "tags": "a,b"}, "guest"),
    ("vhost update", "PUT", "/api/vhosts/cmp-v", {}, "guest"),
    ("vhost get", "GET", "/api/vhosts/cmp-v", None, "guest"),
    ("vhost missing", "GET", "/api/vhosts/cmp-nope", None, "guest"),
    ("vhosts", "GET", "/api/vhosts", None, "guest"),
    ("vhost bad json", "PUT", "/api/vhosts/cmp-v2", "{nope", "guest"),
    ("user create", "PUT", "/api/users/cmp-u", {"password": "pw", "tags": "management"}, "guest"),
    ("user update", "PUT", "/api/users/cmp-u", {"password": "pw2", "tags": ["monitoring"]}, "guest"),
    ("user get", "GET", "/api/users/cmp-u", None, "guest"),
    ("user missing", "GET", "/api/users/cmp-nope", None, "guest"),
    ("users", "GET", "/api/users", None, "guest"),
    ("user no password", "PUT", "/api/users/cmp-np", {"tags": ""}, "guest"),
    ("user hash", "PUT", "/api/users/cmp-h",
     {"password_hash": "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR",
      "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ""}, "guest"),
    ("user bad hash", "PUT", "/api/users/cmp-bh",
     {"password_hash": "%%%", "tags": ""}, "guest"),
    ("user plain", "PUT", "/api/users/cmp-plain", {"password": "pw", "tags": ""}, "guest"),
    ("not management", "GET", "/api/whoami", None, ("cmp-plain", "pw")),
    ("monitoring lists users", "GET", "/api/users", None, ("cmp-u", "pw2")),
    ("monitoring puts vhost", "PUT", "/api/vhosts/cmp-x", {}, ("cmp-u", "pw2")),
    ("monitoring whoami", "GET", "/api/whoami", None, ("cmp-u", "pw2")),
    ("permission create", "PUT", "/api/permissions/cmp-v/cmp-u",
     {"configure": ".*", "write": ".*", "read": ".*"}, "guest"),
    ("permission update", "PUT", "/api/permissions/cmp-v/cmp-u",
     {"configure": "", "write": ".*", "read": ".*"}, "guest"),
    ("permission get", "GET", "/api/permissions/cmp-v/cmp-u", None, "guest"),
    ("permission missing", "GET", "/api/permissions/cmp-v/guest", None, "guest"),
    ("permission no vhost", "PUT", "/api/permissions/cmp-nope/cmp-u",
     {"configure": ".*", "write": ".*", "read": ".*"}, "guest"),
    ("permission no user", "PUT", "/api/permissions/cmp-v/cmp-nope",
     {"configure": ".*", "write": ".*", "read": ".*"}, "guest"),
    ("permission missing field", "PUT", "/api/permissions/cmp-v/cmp-u",
     {"configure": ".*"}, "guest"),
    ("permissions", "GET", "/api/permissions", None, "guest"),
    ("vhost permissions", "GET", "/api/vhosts/cmp-v/permissions", None, "guest"),
    ("user permissions", "GET", "/api/users/cmp-u/permissions", None, "guest"),
    ("topic permission create", "PUT", "/api/topic-permissions/cmp-v/cmp-u",
     {"exchange": "amq.topic", "write": "^a", "read": ".*"}, "guest"),
    ("topic permission update", "PUT", "/api/topic-permissions/cmp-v/cmp-u",
     {"exchange": "amq.topic", "write": "^b", "read": ".*"}, "guest"),
    ("topic permission get", "GET", "/api/topic-permissions/cmp-v/cmp-u", None, "guest"),
    ("topic permissions", "GET", "/api/topic-permissions", None, "guest"),
    ("topic permission delete", "DELETE", "/api/topic-permissions/cmp-v/cmp-u", None, "guest"),
    ("topic permission gone", "GET", "/api/topic-permissions/cmp-v/cmp-u", None, "guest"),
    ("topic permission delete again", "DELETE", "/api/topic-permissions/cmp-v/cmp-u", None, "guest"),
    ("policy create", "PUT", "/api/policies/cmp-v/cmp-p",
     {"pattern": "^pol\\.", "definition": {"max-length": 2}, "priority": 1, "apply-to": "queues"},
     "guest"),
    ("policy update", "PUT", "/api/policies/cmp-v/cmp-p",
     {"pattern": "^pol\\.", "definition": {"max-length": 4}}, "guest"),
    ("policy get", "GET", "/api/policies/cmp-v/cmp-p", None, "guest"),
    ("policies", "GET", "/api/policies", None, "guest"),
    ("vhost policies", "GET", "/api/policies/cmp-v", None, "guest"),
    ("policy missing", "GET", "/api/policies/cmp-v/cmp-nope", None, "guest"),
    ("policy invalid key", "PUT", "/api/policies/cmp-v/cmp-bad",
     {"pattern": ".*", "definition": {"max-lenght": 2}}, "guest"),
    ("policy invalid value", "PUT", "/api/policies/cmp-v/cmp-bad",
     {"pattern": ".*", "definition": {"max-length": "two"}}, "guest"),
    ("policy no pattern", "PUT", "/api/policies/cmp-v/cmp-bad",
     {"definition": {"max-length": 2}}, "guest"),
    ("policy no vhost", "PUT", "/api/policies/cmp-nope/cmp-p",
     {"pattern": ".*", "definition": {"max-length": 2}}, "guest"),
    ("policy monitoring", "PUT", "/api/policies/cmp-v/cmp-m",
     {"pattern": ".*", "definition": {"max-length": 2}}, ("cmp-u", "pw2")),
    ("policy delete", "DELETE", "/api/policies/cmp-v/cmp-p", None, "guest"),
    ("policy delete again", "DELETE", "/api/policies/cmp-v/cmp-p", None, "guest"),
    ("operator policy create", "PUT", "/api/operator-policies/cmp-v/cmp-op",
     {"pattern": ".*", "definition": {"max-length": 10}, "apply-to": "queues"}, "guest"),
    ("operator policy get", "GET", "/api/operator-policies/cmp-v/cmp-op", None, "guest"),
    ("operator policies", "GET", "/api/operator-policies", None, "guest"),
    ("operator policy invalid", "PUT", "/api/operator-policies/cmp-v/cmp-op2",
     {"pattern": ".*", "definition": {"dead-letter-exchange": "x"}}, "guest"),
    ("operator policy delete", "DELETE", "/api/operator-policies/cmp-v/cmp-op", None, "guest"),
    ("vhost limit", "PUT", "/api/vhost-limits/cmp-v/max-queues", {"value": 3}, "guest"),
    ("vhost limit again", "PUT", "/api/vhost-limits/cmp-v/max-connections", {"value": 5}, "guest"),
    ("vhost limits of one", "GET", "/api/vhost-limits/cmp-v", None, "guest"),
    ("vhost limits", "GET", "/api/vhost-limits", None, "guest"),
    ("vhost limit bad name", "PUT", "/api/vhost-limits/cmp-v/max-nothing", {"value": 3}, "guest"),
    ("vhost limit bad value", "PUT", "/api/vhost-limits/cmp-v/max-queues", {"value": "x"}, "guest"),
    ("vhost limit no value", "PUT", "/api/vhost-limits/cmp-v/max-queues", {}, "guest"),
    ("vhost limit delete", "DELETE", "/api/vhost-limits/cmp-v/max-queues", None, "guest"),
    ("user limit", "PUT", "/api/user-limits/cmp-u/max-channels", {"value": 3}, "guest"),
    ("user limits of one", "GET", "/api/user-limits/cmp-u", None, "guest"),
    ("user limits", "GET", "/api/user-limits", None, "guest"),
    ("user limit delete", "DELETE", "/api/user-limits/cmp-u/max-channels", None, "guest"),
    ("aliveness", "GET", "/api/aliveness-test/%2F", None, "guest"),
    ("aliveness no vhost", "GET", "/api/aliveness-test/cmp-nope", None, "guest"),
    ("definitions", "GET", "/api/definitions", None, "guest"),
    ("definitions of vhost", "GET", "/api/definitions/cmp-v", None, "guest"),
    ("definitions import", "POST", "/api/definitions",
     {"vhosts": [{"name": "cmp-imported"}], "users": [], "permissions": []}, "guest"),
    ("definitions import bad", "POST", "/api/definitions", "{nope", "guest"),
    ("permission delete", "DELETE", "/api/permissions/cmp-v/cmp-u", None, "guest"),
    ("permission delete again", "DELETE", "/api/permissions/cmp-v/cmp-u", None, "guest"),
    ("unknown path", "GET", "/api/cmp-nothing", None, "guest"),
    ("wrong method", "POST", "/api/users/cmp-u", {}, "guest"),
    ("user delete", "DELETE", "/api/users/cmp-u", None, "guest"),
    ("user delete again", "DELETE", "/api/users/cmp-u", None, "guest"),
    ("vhost delete", "DELETE", "/api/vhosts/cmp-v", None, "guest"),
    ("vhost delete again", "DELETE", "/api/vhosts/cmp-v", None, "guest"),
]

CLEANUP = [
    ("DELETE", "/api/vhosts/cmp-imported"), ("DELETE", "/api/vhosts/cmp-v2"),
    ("DELETE", "/api/vhosts/cmp-x"), ("DELETE", "/api/users/cmp-np"),
    ("DELETE", "/api/users/cmp-h"), ("DELETE", "/api/users/cmp-bh"),
    ("DELETE", "/api/users/cmp-plain"),
]


def call(base, method, path, body, user):
    data = None
    if body is not None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("content-type", "application/json")
    if user is not None:
        name, pw = (user, user) if isinstance(user, str) else user
        req.add_header("authorization", "Basic " + base64.b64encode(f"{name}:{pw}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def shape(text):
    """Field names of a JSON answer (recursively for objects; first element of lists)."""
    try:
        v = json.loads(text)
    except ValueError:
        return text

    def walk(v):
        if isinstance(v, dict):
            # Node names differ by nature: keep only the shape of what a node maps to.
            if "cluster_state" in v:
                v = dict(v, cluster_state={"node": "str"})
            return {k: walk(x) for k, x in sorted(v.items())}
        if isinstance(v, list):
            return [walk(v[0])] if v else []
        return type(v).__name__
    return walk(v)


def main():
    a, b = sys.argv[1], sys.argv[2]
    differ = 0
    for name, method, path, body, user in CASES:
        ra = call(a, method, path, body, user)
        rb = call(b, method, path, body, user)
        is_error = ra[0] >= 400
        same = ra[0] == rb[0] and (ra[1] == rb[1] if is_error else shape(ra[1]) == shape(rb[1]))
        mark = "same" if same else "DIFF"
        differ += not same
        print(f"{mark:4} {name}: {method} {path}")
        if not same or "-v" in sys.argv:
            print(f"     a: {ra[0]} {ra[1][:600]}")
            print(f"     b: {rb[0]} {rb[1][:600]}")
    for method, path in CLEANUP:
        for base in (a, b):
            call(base, method, path, None, "guest")
    print(f"{len(CASES) - differ} same, {differ} differ")


if __name__ == "__main__":
    main()
