#!/usr/bin/env python3
"""Reads SOAP responses for the vcsim test scripts. Parses by namespace,
never by prefix (the simulator writes XMLSchema-instance:type, not xsi:type).

  xmlq.py FILE text NAME        text of the first element named NAME
  xmlq.py FILE all NAME         text of every element named NAME, one a line
  xmlq.py FILE prop NAME        text of the val of property NAME
  xmlq.py FILE fault            type of the SOAP fault ("" if none)
  xmlq.py FILE faultfield NAME  text of NAME inside the fault detail
  xmlq.py FILE disks            key, fileName, uuid, changeId, parent fileName
                                 of every VirtualDisk, tab separated
  xmlq.py FILE areas            "startOffset length" then "start length" per
                                 changed area
  xmlq.py FILE task             state, then error type or result, of a Task
                                 info in a RetrievePropertiesEx answer
  xmlq.py FILE json EXPR        evaluate EXPR over the JSON document FILE as R
  xmlq.py --serve               read tab-separated argument lines on stdin and
                                 answer each, ending with a __XMLQ_END__ line
                                 (one Python for a whole test script)
"""
import sys
import xml.etree.ElementTree as ET

XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


def local(tag):
    return tag.rsplit("}", 1)[-1]


def find_all(root, name):
    return [e for e in root.iter() if local(e.tag) == name]


def child(e, name):
    for c in e:
        if local(c.tag) == name:
            return c
    return None


def child_text(e, name):
    c = child(e, name)
    return "" if c is None else (c.text or "")


def xsi_type(e):
    t = e.get(XSI_TYPE, "")
    return t.rsplit(":", 1)[-1]


def fault_detail(root):
    for f in find_all(root, "Fault"):
        detail = child(f, "detail")
        if detail is not None and len(detail):
            return detail[0]
    return None


def run(argv):
    path, cmd, args = argv[0], argv[1], argv[2:]
    if cmd == "json":
        import json
        R = json.load(open(path))
        print(eval(args[0], {"R": R}))
        return
    root = ET.parse(path).getroot()
    if cmd == "text":
        hits = find_all(root, args[0])
        print(hits[0].text or "" if hits else "")
    elif cmd == "all":
        for e in find_all(root, args[0]):
            print(e.text or "")
    elif cmd == "prop":
        for ps in find_all(root, "propSet"):
            if child_text(ps, "name") == args[0]:
                v = child(ps, "val")
                print("" if v is None else (v.text or ""))
                return
        print("")
    elif cmd == "fault":
        d = fault_detail(root)
        if d is not None:
            print(xsi_type(d) or local(d.tag).removesuffix("Fault"))
        else:
            print("")
    elif cmd == "faultfield":
        d = fault_detail(root)
        print("" if d is None else child_text(d, args[0]))
    elif cmd == "disks":
        for e in root.iter():
            if xsi_type(e) != "VirtualDisk":
                continue
            b = child(e, "backing")
            parent = child(b, "parent") if b is not None else None
            print("\t".join([
                child_text(e, "key"),
                child_text(b, "fileName") if b is not None else "",
                child_text(b, "uuid") if b is not None else "",
                child_text(b, "changeId") if b is not None else "",
                child_text(parent, "fileName") if parent is not None else "",
                child_text(e, "controllerKey"),
                child_text(e, "unitNumber"),
            ]))
    elif cmd == "areas":
        rv = find_all(root, "returnval")[0]
        print(child_text(rv, "startOffset"), child_text(rv, "length"))
        for a in rv:
            if local(a.tag) == "changedArea":
                print(child_text(a, "start"), child_text(a, "length"))
    elif cmd == "task":
        info = None
        for e in root.iter():
            if local(e.tag) == "val" and xsi_type(e) == "TaskInfo":
                info = e
        if info is None:
            print("missing")
            return
        print(child_text(info, "state"))
        err = child(info, "error")
        if err is not None:
            f = child(err, "fault")
            print(xsi_type(f) if f is not None else "error")
            print(child_text(err, "localizedMessage"))
        else:
            print(child_text(info, "result"))
    else:
        raise SystemExit("xmlq.py: unknown command " + cmd)


def serve():
    import io
    import contextlib
    for line in sys.stdin:
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                run(line.rstrip("\n").split("\t"))
        except (Exception, SystemExit) as e:
            out.write("xmlq-error: %s\n" % e)
        sys.stdout.write(out.getvalue())
        sys.stdout.write("__XMLQ_END__\n")
        sys.stdout.flush()


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        run(sys.argv[1:])
