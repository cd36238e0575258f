#!/usr/bin/env python3
"""Prints one property of a VM as vSphere reports it, one value a line.

usage: vsphere_props.py READY_JSON VM_NAME PROPERTY   (e.g. disabledMethod)

The service tests check what the agent left on the simulated vCenter
behind its back, through the SOAP API as any vSphere client would.
"""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import vsoap  # noqa: E402

S = vsoap.Session(sys.argv[1])
moref = S.ready["vms"][sys.argv[2]]["moref"]
out = S.call('<RetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">'
             'propertyCollector</_this><specSet><propSet><type>VirtualMachine</type><pathSet>%s'
             '</pathSet></propSet><objectSet><obj type="VirtualMachine">%s</obj></objectSet>'
             '</specSet><options/></RetrievePropertiesEx>' % (sys.argv[3], moref))
val = re.search(r"<val[^>]*>(.*?)</val>", out, re.S)
if val:
    for v in re.findall(r"<(?:\w+:)?string[^>]*>([^<]*)<", val.group(1)):
        print(v)
