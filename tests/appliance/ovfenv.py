#!/usr/bin/env python3
"""Writes an OVF environment document (ovf-env.xml) as vSphere does for a
deployed appliance: an Environment in the OVF environment namespace, a
PlatformSection, a PropertySection with one Property per KEY=VALUE.

  ovfenv.py [--file-prop KEY=PATH ...] [KEY=VALUE ...] > ovf-env.xml

--file-prop puts the base64 of a file's content (a PEM file) in KEY, as an
admin pastes `base64 -w0 FILE` into the deploy wizard.
"""
import base64
import sys
from xml.sax.saxutils import quoteattr


def main(argv):
    props = []
    it = iter(argv)
    for a in it:
        if a == "--file-prop":
            k, path = next(it).split("=", 1)
            with open(path, "rb") as f:
                props.append((k, base64.b64encode(f.read()).decode()))
        else:
            k, v = a.split("=", 1)
            props.append((k, v))
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           '<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1"',
           '     xmlns:oe="http://schemas.dmtf.org/ovf/environment/1"',
           '     xmlns:ve="http://www.vmware.com/schema/ovfenv"',
           '     oe:id="" ve:vCenterId="vm-ferry-proxy">',
           '  <PlatformSection>',
           '    <Kind>VMware ESXi</Kind><Version>8.0.2</Version>',
           '    <Vendor>VMware, Inc.</Vendor><Locale>en</Locale>',
           '  </PlatformSection>',
           '  <PropertySection>']
    for k, v in props:
        out.append(f'    <Property oe:key={quoteattr(k)} oe:value={quoteattr(v)}/>')
    out += ['  </PropertySection>', '</Environment>', '']
    sys.stdout.write("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1:])
