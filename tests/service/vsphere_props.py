#!/usr/bin/env python3
"""Prints one property of a VM as vSphere reports it, one value a line.

usage: vsphere_props.py READY_JSON VM_NAME PROPERTY   (e.g. disabledMethod)

The service tests check what the agent left on the simulated vCenter
behind its back, through the SOAP API as any vSphere client would.
"""
import json
import re
import ssl
import sys
import urllib.request

R = json.load(open(sys.argv[1]))
CTX = ssl._create_unverified_context()
COOKIE = None
ENV = ('<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
       'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>%s'
       '</soapenv:Body></soapenv:Envelope>')


def call(body):
    global COOKIE
    req = urllib.request.Request(R["url"], data=(ENV % body).encode(), method="POST")
    req.add_header("Content-Type", "text/xml")
    req.add_header("SOAPAction", "urn:vim25/6.5")
    if COOKIE:
        req.add_header("Cookie", COOKIE)
    try:
        resp = urllib.request.urlopen(req, context=CTX)
    except urllib.error.HTTPError as e:
        sys.exit("SOAP fault: " + e.read().decode())
    c = resp.headers.get("Set-Cookie")
    if c:
        COOKIE = c.split(";")[0]
    return resp.read().decode()


call('<Login xmlns="urn:vim25"><_this type="SessionManager">SessionManager</_this>'
     '<userName>%s</userName><password>%s</password></Login>' % (R["username"], R["password"]))
moref = R["vms"][sys.argv[2]]["moref"]
out = call('<RetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">'
           'propertyCollector</_this><specSet><propSet><type>VirtualMachine</type><pathSet>%s'
           '</pathSet></propSet><objectSet><obj type="VirtualMachine">%s</obj></objectSet></specSet>'
           '<options/></RetrievePropertiesEx>' % (sys.argv[3], moref))
val = re.search(r"<val[^>]*>(.*?)</val>", out, re.S)
if val:
    for v in re.findall(r"<(?:\w+:)?string[^>]*>([^<]*)<", val.group(1)):
        print(v)
