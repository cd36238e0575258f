#!/usr/bin/env python3
"""Checks a backup's VM configuration record (`ferry show BACKUP --json`)
against the VM as the simulated vCenter reports it, read here through the
SOAP API (tests/tools/vsoap.py) and parsed by namespace with Python's own
XML parser: nothing of Ferry's vSphere client is trusted.

usage: vm_config_check.py READY_JSON VM SHOW_JSON DISK_KEY...
  DISK_KEY...  the device keys of the disks backed up, in backup order

Prints what differs and exits 1, or prints "record matches VM" and exits 0.
"""
import json
import os
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import vsoap  # noqa: E402

V = "{urn:vim25}"
XSI = "{http://www.w3.org/2001/XMLSchema-instance}type"
PATHS = ["config.name", "config.guestId", "config.version", "config.firmware",
         "config.bootOptions", "config.hardware.numCPU",
         "config.hardware.numCoresPerSocket", "config.hardware.memoryMB",
         "config.hardware.device", "config.extraConfig"]
CONTROLLERS = {"VirtualLsiLogicController": "lsilogic",
               "VirtualLsiLogicSASController": "lsilogic-sas",
               "ParaVirtualSCSIController": "pvscsi",
               "VirtualBusLogicController": "buslogic",
               "VirtualIDEController": "ide", "VirtualAHCIController": "sata",
               "VirtualNVMEController": "nvme"}
NICS = {"VirtualVmxnet3": "vmxnet3", "VirtualE1000": "e1000",
        "VirtualE1000e": "e1000e", "VirtualPCNet32": "pcnet32"}
# docs/RESTORE.md's allow-list, as far as this VM has those keys.
ALLOWED = {"disk.EnableUUID", "svga.present", "devices.hotplug"}


def text(el, name, default=""):
    c = el.find(V + name)
    return c.text or "" if c is not None else default


def props(session, moref):
    body = "".join("<pathSet>%s</pathSet>" % p for p in PATHS)
    xml = session.call('<RetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">'
                       'propertyCollector</_this><specSet><propSet><type>VirtualMachine</type>'
                       '%s</propSet><objectSet><obj type="VirtualMachine">%s</obj></objectSet>'
                       '</specSet><options/></RetrievePropertiesEx>' % (body, moref))
    out = {}
    for ps in ET.fromstring(xml).iter(V + "propSet"):
        out[text(ps, "name")] = ps.find(V + "val")
    return out


def expected(p, disk_keys):
    dev = p["config.hardware.device"]
    rec = {
        "version": 1, "newer": False,
        "name": p["config.name"].text, "guest_id": p["config.guestId"].text,
        "hardware_version": p["config.version"].text, "firmware": p["config.firmware"].text,
        "secure_boot": text(p["config.bootOptions"], "efiSecureBootEnabled") == "true",
        "cpus": int(p["config.hardware.numCPU"].text),
        "cores_per_socket": int(p["config.hardware.numCoresPerSocket"].text),
        "memory_mb": int(p["config.hardware.memoryMB"].text),
        "controllers": [], "disks": [], "nics": [], "cdroms": [], "extra_config": {},
    }
    for d in dev:
        t = d.get(XSI).split(":")[-1]
        key = int(text(d, "key"))
        if t in CONTROLLERS:
            scsi = d.find(V + "sharedBus") is not None
            rec["controllers"].append({"key": key, "type": CONTROLLERS[t],
                                       "bus": int(text(d, "busNumber")),
                                       "sharing": text(d, "sharedBus") if scsi else ""})
        elif t == "VirtualDisk":
            b = d.find(V + "backing")
            thin = text(b, "thinProvisioned") == "true"
            eager = text(b, "eagerlyScrub") == "true"
            rec["disks"].append({
                "key": key, "controller_key": int(text(d, "controllerKey")),
                "unit": int(text(d, "unitNumber")), "capacity": int(text(d, "capacityInBytes")),
                "provisioning": "thin" if thin else ("thick-eager" if eager else "thick-lazy"),
                "mode": text(b, "diskMode"),
                "backup_disk": disk_keys.index(key) if key in disk_keys else None})
        elif t in NICS:
            rec["nics"].append({"key": key, "adapter": NICS[t],
                                "network": text(d.find(V + "backing"), "deviceName"),
                                "mac_type": text(d, "addressType").lower(),
                                "mac": text(d, "macAddress").lower()})
        elif t == "VirtualCdrom":
            rec["cdroms"].append({"key": key, "controller_key": int(text(d, "controllerKey")),
                                  "unit": int(text(d, "unitNumber"))})
    extra = p.get("config.extraConfig")
    for o in (extra if extra is not None else []):
        if text(o, "key") in ALLOWED:
            rec["extra_config"][text(o, "key")] = text(o, "value")
    return rec


def main():
    ready, vm, show = sys.argv[1:4]
    disk_keys = [int(k) for k in sys.argv[4:]]
    s = vsoap.Session(ready)
    want = expected(props(s, s.ready["vms"][vm]["moref"]), disk_keys)
    got = json.load(open(show))["vm_config"]
    if got != want:
        for k in sorted(set(want) | set(got or {})):
            if (got or {}).get(k) != want.get(k):
                print(f"{k}: recorded {json.dumps((got or {}).get(k))}\n"
                      f"{' ' * len(k)}  vCenter  {json.dumps(want.get(k))}")
        sys.exit(1)
    print("record matches VM")


if __name__ == "__main__":
    main()
