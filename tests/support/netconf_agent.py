# A small Junos-like NETCONF 1.0 server on stdin/stdout: the `netconf` subsystem of the test
# sshd (written and started by tests/support/sshd.rs, whose top comment describes the state
# file). Usage: netconf_agent.py STATE_JSON EVENTS_LOG. Standard library only.
#
# Like Junos: XML comments, then a hello offering base:1.0 only, `]]>]]>` framing; replies
# copy the attributes of the client's <rpc> (message-id, ...). The state file is re-read on
# every RPC. Garbage input gets an rpc-error, never a crash.
import json
import os
import re
import sys
import time
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

STATE, EVENTS = sys.argv[1], sys.argv[2]
DELIM = b"]]>]]>"
MAX_MESSAGE = 1 << 20
NS = "urn:ietf:params:xml:ns:netconf:base:1.0"
RELEASE = {"mx": "17.3R3", "els": "18.1R3"}
events_fd = None
last_state = {}


def event(line):
    """Appends one whole line with a single O_APPEND write (atomic between sessions)."""
    global events_fd
    try:
        if events_fd is None:
            events_fd = os.open(EVENTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        os.write(events_fd, (line.replace("\n", " ") + "\n").encode("utf-8", "replace"))
    except OSError:
        pass


def load_state():
    global last_state
    try:
        with open(STATE, "rb") as f:
            state = json.loads(f.read().decode("utf-8"))
        if isinstance(state, dict):
            last_state = state
    except (OSError, ValueError):
        pass  # keep the last good state
    return last_state


def send(data):
    out = sys.stdout.buffer
    out.write(data)
    out.flush()


def frame(text):
    return (text + "\n").encode("utf-8") + DELIM + b"\n"


def local(tag):
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def hello():
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or "esi"
    caps = [
        "urn:ietf:params:netconf:base:1.0",
        "urn:ietf:params:netconf:capability:candidate:1.0",
        "urn:ietf:params:netconf:capability:confirmed-commit:1.0",
        "urn:ietf:params:netconf:capability:validate:1.0",
        "urn:ietf:params:netconf:capability:url:1.0?scheme=http,ftp,file",
        "urn:ietf:params:xml:ns:netconf:base:1.0",
        "http://xml.juniper.net/netconf/junos/1.0",
        "http://xml.juniper.net/dmi/system/1.0",
    ]
    lines = [
        "<!-- No zombies were killed during the creation of this user interface -->",
        "<!-- user %s, class j-super-user -->" % escape(user).replace("--", "- -"),
        '<hello xmlns="%s">' % NS,
        "  <capabilities>",
    ]
    lines += ["    <capability>%s</capability>" % escape(c) for c in caps]
    lines += ["  </capabilities>", "  <session-id>%d</session-id>" % os.getpid(), "</hello>"]
    return frame("\n".join(lines))


ATTR = re.compile(r"""([^\s=/>]+)\s*=\s*("[^"]*"|'[^']*')""")


def reply_attrs(raw):
    """The attributes of the client's <rpc> start tag, verbatim, but its xmlns declarations
    of the default and junos namespaces (the reply declares its own)."""
    m = re.search(rb"<(?:[A-Za-z_][\w.-]*:)?rpc(\s[^>]*)?>", raw)
    if not m or not m.group(1):
        return ""
    text = m.group(1).decode("utf-8", "replace")
    kept = [n + "=" + v for n, v in ATTR.findall(text) if n not in ("xmlns", "xmlns:junos")]
    return "".join(" " + a for a in kept)


def reply(attrs, layout, body):
    head = '<rpc-reply xmlns="%s" xmlns:junos="http://xml.juniper.net/junos/%s/junos"%s>' % (
        NS, RELEASE.get(layout, RELEASE["mx"]), attrs)
    return frame(head + "\n" + body + "</rpc-reply>")


def rpc_error(message, tag="operation-failed", etype="protocol", bad=None):
    info = ""
    if bad is not None:
        info = "<error-info>\n<bad-element>%s</bad-element>\n</error-info>\n" % escape(bad)
    return ("<rpc-error>\n<error-type>%s</error-type>\n<error-tag>%s</error-tag>\n"
            "<error-severity>error</error-severity>\n<error-message>\n%s\n</error-message>\n%s</rpc-error>\n"
            % (etype, tag, escape(message), info))


def text(value):
    return escape(str(value))


def vrrp_body(state, layout):
    groups = [g for g in state.get("vrrp") or [] if isinstance(g, dict)]
    out = []
    if layout == "els":
        out.append('<vrrp-information junos:style="brief">\n')
        if groups:
            out.append("<vrrp-interface>\n")
        for i, g in enumerate(groups):
            name = str(g.get("interface", ""))
            phys, _, unit = name.partition(".")
            mode = "<vrrp-mode>Active</vrrp-mode>"
            if i == 0:  # as in vrrp-qfx-els.xml: the first record's mode is inside <active-inherit>
                mode = "<active-inherit>" + mode + "</active-inherit>"
            out.append("<vrrp-vlan><physical-interface>%s</physical-interface><unit>%s</unit></vrrp-vlan>\n"
                       "<interface-state>%s</interface-state>\n<group>%s</group>\n<vrrp-state>%s</vrrp-state>\n%s\n"
                       % (text(phys), text(unit or "0"), text(g.get("interface_state", "up")),
                          text(g.get("group", 0)), text(g.get("state", "init")), mode))
        if groups:
            out.append("</vrrp-interface>\n")
    else:
        out.append('<vrrp-information xmlns="http://xml.juniper.net/junos/17.3R3/junos-vrrp" '
                   'junos:style="brief">\n')
        for i, g in enumerate(groups):
            vrrp_state = str(g.get("state", "init"))
            shown = text(vrrp_state)
            if i % 2 == 1:  # as in vrrp-mx-primary.xml: some values wrapped in newlines
                shown = "\n" + shown + "\n"
            num = g.get("group", 0)
            out.append(
                "<vrrp-interface>\n<interface>%s</interface>\n<interface-state>%s</interface-state>\n"
                "<group>%s</group>\n<vrrp-state>%s</vrrp-state>\n<vrrp-mode>Active</vrrp-mode>\n"
                "<timer-name>%s</timer-name>\n<timer-value>0.%03d</timer-value>\n"
                "<local-interface-address>%s</local-interface-address>\n"
                "<virtual-ip-address>%s</virtual-ip-address>\n</vrrp-interface>\n"
                % (text(g.get("interface", "")), text(g.get("interface_state", "up")), text(num), shown,
                   "A" if vrrp_state == "master" else "D", (137 * (i + 1)) % 1000,
                   text(g.get("local_address", "172.16.%s.2" % num)),
                   text(g.get("virtual_address", "172.16.%s.1" % num))))
    out.append("</vrrp-information>\n")
    return "".join(out)


def bgp_body(state, instance):
    bgp = state.get("bgp") or {}
    if not isinstance(bgp, dict):
        bgp = {}
    chosen = [(instance, bgp.get(instance) or [])] if instance is not None else list(bgp.items())
    peers = [(inst, p) for inst, ps in chosen if isinstance(ps, list) for p in ps if isinstance(p, dict)]
    down = sum(1 for _, p in peers if p.get("state") != "Established")
    out = ['<bgp-information xmlns="http://xml.juniper.net/junos/17.3R3/junos-routing">\n',
           "<group-count>%d</group-count>\n" % len({inst for inst, _ in peers}),
           "<peer-count>%d</peer-count>\n<down-peer-count>%d</down-peer-count>\n" % (len(peers), down)]
    for inst, p in peers:
        peer_state = str(p.get("state", "Idle"))
        fmt = "Establ" if peer_state == "Established" else peer_state
        out.append(
            '<bgp-peer junos:style="terse" heading="Peer                     AS      InPkt     OutPkt    OutQ   '
            'Flaps Last Up/Dwn State|#Active/Received/Accepted/Damped...">\n'
            "<peer-address>%s</peer-address>\n<peer-as>%s</peer-as>\n<input-messages>1204</input-messages>\n"
            "<output-messages>1190</output-messages>\n<route-queue-count>0</route-queue-count>\n"
            '<flap-count>0</flap-count>\n<elapsed-time junos:seconds="35961">9:59:21</elapsed-time>\n'
            '<peer-state junos:format="%s">%s</peer-state>\n'
            % (text(p.get("peer", "")), text(p.get("as", 65001)), text(fmt), text(peer_state)))
        if peer_state == "Established":
            rib = "inet.0" if inst == "master" else inst + ".inet.0"
            out.append('<bgp-rib junos:style="terse">\n<name>%s</name>\n<active-prefix-count>3</active-prefix-count>\n'
                       "<received-prefix-count>3</received-prefix-count>\n"
                       "<accepted-prefix-count>3</accepted-prefix-count>\n"
                       "<suppressed-prefix-count>0</suppressed-prefix-count>\n</bgp-rib>\n" % text(rib))
        out.append("</bgp-peer>\n")
    out.append("</bgp-information>\n")
    return "".join(out)


def answer(raw):
    """Handles one framed message after the hello; returns False to end the session."""
    state = load_state()
    layout = state.get("layout") if state.get("layout") in RELEASE else "mx"
    faults = state.get("faults") if isinstance(state.get("faults"), dict) else {}
    attrs = reply_attrs(raw)
    try:
        root = ET.fromstring(raw.strip())
    except ET.ParseError as e:
        event("rpc malformed")
        send(reply(attrs, layout, rpc_error("xml parse error: %s" % e, tag="malformed-message", etype="rpc")))
        return True
    ops = list(root) if local(root.tag) == "rpc" else []
    if local(root.tag) != "rpc" or not ops:
        event("rpc " + (local(root.tag) if local(root.tag) != "rpc" else "empty"))
        send(reply(attrs, layout, rpc_error("syntax error, expecting <rpc>", bad=local(root.tag))))
        return True
    op = ops[0]
    name = local(op.tag)
    event("rpc " + name)
    if name == "close-session":
        event("close")
        send(reply(attrs, layout, "<ok/>\n"))
        return False
    try:
        delay = float(faults.get("delay_s") or 0)
    except (TypeError, ValueError):
        delay = 0.0
    if delay > 0:
        time.sleep(min(delay, 3600.0))
    if faults.get("drop"):
        event("fault drop")
        return False
    if faults.get("rpc_error"):
        data = reply(attrs, layout, rpc_error("rpc_error fault of the test device", etype="application"))
    elif faults.get("garbage"):
        data = b"this is not XML at all <<<& \x00\x01 junos:garbage\n" + DELIM + b"\n"
    elif name == "get-vrrp-information":
        data = reply(attrs, layout, vrrp_body(state, layout))
    elif name == "get-bgp-summary-information":
        inst = None
        for child in op:
            if local(child.tag) in ("exact-instance", "instance"):
                inst = (child.text or "").strip()
        data = reply(attrs, layout, bgp_body(state, inst))
    else:
        data = reply(attrs, layout, rpc_error("syntax error", bad=name))
    if faults.get("truncate"):
        event("fault truncate")
        send(data[: len(data) // 2])
        return False
    send(data)
    return True


def main():
    event("session %d" % os.getpid())
    send(hello())
    buf = b""
    seen_hello = False
    while True:
        while DELIM not in buf:
            if len(buf) > MAX_MESSAGE:
                event("error message too long")
                return
            chunk = os.read(0, 65536)
            if not chunk:
                event("eof")
                return
            buf += chunk
        raw, buf = buf.split(DELIM, 1)
        if not seen_hello:
            seen_hello = True
            if re.search(rb"<(?:[\w.-]+:)?hello[\s>/]", raw):
                event("hello")
                continue
            # No hello first: answer it as an RPC (an error, unless it is one).
        if not raw.strip():
            continue
        if not answer(raw):
            return


try:
    main()
except (BrokenPipeError, ConnectionResetError):
    event("eof")
except Exception as e:  # never a traceback for the client: log it and end the session
    event("error %s: %s" % (type(e).__name__, e))
os._exit(0)
