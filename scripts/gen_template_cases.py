#!/usr/bin/env python3
"""Generate the reference cases for tests/templates.rs with Python Jinja2 + PyYAML.

Run ONCE (Jinja2 3.x and PyYAML installed), from the crate root:

    python3 scripts/gen_template_cases.py [/path/to/shared/fixtures]

Reads   tests/fixtures/templates/*.json          (copies of the 23 real templates)
        <shared>/flows/*/*.json                  (recorded monitoring_worker params; optional)
Writes  tests/fixtures/template_cases/<template>.json
        = [{"name", "params", "rendered", "parsed", ["render_error"], ["yaml_error"], "shape_ok"}]

`rendered` is what jinja2.Environment() (defaults: no trim_blocks, keep_trailing_newline=False,
lenient Undefined, no autoescape) produces, with the original's `match` filter
(`re.match(pattern, value)`); `parsed` is yaml.safe_load of it. When Python fails, the case
records the error instead and the Rust side must fail too.
"""
import glob
import json
import os
import re
import sys

import jinja2
import jinja2.meta
import jinja2.nodes
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATES = os.path.join(ROOT, "tests/fixtures/templates")
OUT = os.path.join(ROOT, "tests/fixtures/template_cases")
SHARED = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "../shared/fixtures")


def make_env():
    env = jinja2.Environment()
    env.filters["match"] = lambda value, pattern: re.match(pattern, value) is not None
    return env


ENV = make_env()


def load_template(path):
    with open(path) as f:
        record = json.load(f)
    body = record["value"]["body"]
    if isinstance(body, str):
        body = json.loads(body)
    return body["template_file"]


# ---------------------------------------------------------------- flows: recorded params

def heat_outputs_index(flow_files):
    """(resource_type, resource_id) -> {output_key: output_value} from job_state/state writes."""
    index = {}
    for path in flow_files:
        with open(path) as f:
            flow = json.load(f)
        rtype, rid = flow["resource_type"], flow["resource_id"]
        for ev in flow["events"]:
            value = ev.get("value")
            if not isinstance(value, dict):
                continue
            outputs = value.get("heat_outputs")
            state = value.get("state")
            if outputs is None and isinstance(state, str):
                try:
                    outputs = json.loads(state).get("heat_outputs")
                except ValueError:
                    outputs = None
            elif outputs is None and isinstance(state, dict):
                outputs = state.get("heat_outputs")
            if isinstance(outputs, str):
                try:
                    outputs = json.loads(outputs)
                except ValueError:
                    continue
            if not isinstance(outputs, list) or not outputs:
                continue
            entry = index.setdefault((rtype, rid), {})
            for out in outputs:
                if isinstance(out, dict) and "output_key" in out:
                    entry[out["output_key"]] = out.get("output_value")
    return index


def resolve_param(p, outputs):
    kind, value = p.get("type"), p.get("value")
    if kind == "output_key":
        key = (value["resource_type"], value["resource_id"])
        found = outputs.get(key, {})
        if value["output_key"] in found:
            return found[value["output_key"]]
        return "default-domain:admin:%s" % value["resource_id"]
    if kind == "list":
        return [resolve_param(x, outputs) for x in value]
    return value


def flow_cases():
    """template name -> list of (case name, params), deduplicated."""
    files = sorted(glob.glob(os.path.join(SHARED, "flows/*/*.json")))
    outputs = heat_outputs_index(files)
    cases = {}
    for path in files:
        with open(path) as f:
            flow = json.load(f)
        for ev in flow["events"]:
            key = ev.get("key", "")
            if not (key.startswith("/jobs/all/create:monitoring_worker")
                    or key.startswith("/jobs/all/delete:monitoring_worker")):
                continue
            value = ev.get("value")
            if not isinstance(value, list) or len(value) < 2 or not isinstance(value[1], dict):
                continue
            job = value[1]
            params = {p["param"]: resolve_param(p, outputs) for p in job.get("params", [])}
            name = "%s_monitoring" % job["resource_type"]
            run = os.path.basename(os.path.dirname(path))
            case = ("flow:%s:%s:%s" % (run, job.get("action"), job["resource_id"][:8]), params)
            known = cases.setdefault(name, [])
            if all(c[1] != params for c in known):
                known.append(case)
    return cases


# ---------------------------------------------------------------- synthetic params

def analyse(source):
    ast = ENV.parse(source)
    names = sorted(jinja2.meta.find_undeclared_variables(ast))
    loops = sorted({n.iter.name for n in ast.find_all(jinja2.nodes.For)
                    if isinstance(n.iter, jinja2.nodes.Name)})
    tests = set()
    for node in ast.find_all(jinja2.nodes.If):
        tests |= {n.name for n in node.test.find_all(jinja2.nodes.Name)}
        if isinstance(node.test, jinja2.nodes.Name):
            tests.add(node.test.name)
    matches = sorted({n.node.name for n in ast.find_all(jinja2.nodes.Filter)
                      if n.name == "match" and isinstance(n.node, jinja2.nodes.Name)})
    return names, loops, sorted(tests & set(names)), matches


def plausible(name):
    if name.endswith("ip"):
        return "10.79.5.185"
    if name.endswith("_port") and "device" in name or name == "ssh_port":
        return 830
    if name in ("vrid", "slot_number"):
        return 2
    if name == "attached":
        return True
    if name == "device_owner":
        return "compute:nova"
    if name.endswith("fq_name"):
        return "default-domain:admin:0c0ffee0-1234"
    if name.endswith("_id") or name in ("uuid", "vmi_uuid", "gohan_id"):
        return "0c0ffee0-1234-4321-abcd-%s" % name[:12].replace("_", "x")
    return "%s-value" % name


LOOP_ITEMS = {"jinja_vrids": [41, 42, 43], "port_ids": ["p-1", "p-2", "p-3"]}

# Values that exercise Python's str() of odd types and YAML 1.1 implicit typing.
ODD_VALUES = [
    ["a", "b'c"], {"k": None, "n": 1}, 1.5, 1e20, 1e-05, -7, False, "it's", "yes", "off",
    "null", "~", "1e5", "0x1F", "1:20", "0o17", "017", "1_000", ".inf", "nan", "3.", "-.5E+3",
    "NULL", "Null", "y", "2001-12-14x", "a #b", "ü-utf8", 0.1, 12345678901234567890, "",
    [1, [2.5, None]], True, "+12", "1.0e+3",
]


def synthetic_cases(names, loops, tests, matches):
    typical = {n: plausible(n) for n in names}
    for n in loops:
        typical[n] = LOOP_ITEMS.get(n, ["x1", "x2", "x3"])
    cases = [("typical", typical), ("all_none", {n: None for n in names}), ("undefined", {})]
    if names:
        cases.append(("one_missing", {n: v for n, v in typical.items() if n != names[0]}))
    for n in loops:
        items = typical[n]
        for label, value in (("empty", []), ("one", items[:1]), ("three", items[:3])):
            cases.append(("loop:%s:%s" % (n, label), dict(typical, **{n: value})))
    for n in tests:
        for value in (True, False, 0, "", None):
            cases.append(("test:%s=%r" % (n, value), dict(typical, **{n: value})))
    for n in matches:
        for value in ("compute:nova", "network:router", "xcompute", 7):
            cases.append(("match:%s=%r" % (n, value), dict(typical, **{n: value})))
    scalars = [n for n in names if n not in loops]
    for shift in range(0, len(ODD_VALUES), 3 if scalars else len(ODD_VALUES)):
        params = {n: ODD_VALUES[(i + shift) % len(ODD_VALUES)] for i, n in enumerate(scalars)}
        cases.append(("odd:%d" % shift, dict(typical, **params)))
    return cases


# ---------------------------------------------------------------- evaluate in Python

def shape_ok(parsed):
    """The Rust parse() shape rules, applied to PyYAML's result."""
    if parsed is None:
        return True
    if not isinstance(parsed, dict):
        return False
    for key, value in parsed.items():
        if key == "db_mappings":
            if not isinstance(value, list):
                return False
        elif not (isinstance(value, dict) and isinstance(value.get("type"), str)):
            return False
    return True


def stringify_keys(value):
    """JSON object keys must be strings: use Python's str() as the Rust side does."""
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, str) else k: stringify_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [stringify_keys(v) for v in value]
    if isinstance(value, float) and value != value or value in (float("inf"), float("-inf")):
        return repr(value)  # JSON has no inf/nan: the Rust side keeps Python's spelling as text
    return value


def evaluate(source, name, params):
    case = {"name": name, "params": params}
    try:
        rendered = ENV.from_string(source).render(**params)
    except Exception as e:  # noqa: BLE001 - any failure must be a failure in Rust too
        case.update(rendered=None, parsed=None, render_error="%s: %s" % (type(e).__name__, e))
        return case
    case["rendered"] = rendered
    try:
        parsed = yaml.safe_load(rendered)
        json.dumps(stringify_keys(parsed), allow_nan=False)
    except yaml.YAMLError as e:
        case.update(parsed=None, yaml_error=str(e).splitlines()[0])
        return case
    except (TypeError, ValueError) as e:  # not representable as JSON (dates, ...)
        case.update(parsed=None, unrepresentable=str(e))
        return case
    case["parsed"] = stringify_keys(parsed)
    case["shape_ok"] = shape_ok(parsed)
    return case


def main():
    flows = flow_cases()
    os.makedirs(OUT, exist_ok=True)
    total = 0
    for path in sorted(glob.glob(os.path.join(TEMPLATES, "*.json"))):
        name = os.path.splitext(os.path.basename(path))[0]
        source = load_template(path)
        cases = list(flows.get(name, []))
        cases += synthetic_cases(*analyse(source))
        results = [evaluate(source, n, p) for n, p in cases]
        results = [r for r in results if "unrepresentable" not in r]
        out = os.path.join(OUT, name + ".json")
        with open(out, "w") as f:
            json.dump(results, f, indent=1, ensure_ascii=False)
            f.write("\n")
        total += os.path.getsize(out)
        print("%-45s %3d cases" % (name, len(results)))
    print("total %d bytes" % total)


if __name__ == "__main__":
    main()
