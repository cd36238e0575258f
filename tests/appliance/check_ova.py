#!/usr/bin/env python3
"""ova.structure: re-reads the appliance's .ova as vSphere's deploy wizard
and ovftool do, and fails on the first thing they would refuse.

  check_ova.py FILE.ova

Checked: every member is a plain file in a USTAR header (magic "ustar\\0",
version "00", a valid header checksum); the .ovf comes first, the .mf
second, then the files in the descriptor's References order and nothing
else; each References ovf:size is the member's size; the manifest has one
SHA256 line for each other member and every digest matches; the descriptor
is OVF 1.x (the DMTF envelope namespace) with a VirtualSystem whose
VirtualHardwareSection names a vmx-NN family (NN >= 14), 2 vCPUs, 2048 MB,
exactly one paravirtual SCSI controller (ResourceType 6, VirtualSCSI), one
vmxnet3 NIC (ResourceType 10), the boot disk (ResourceType 17) on that
controller and pointing at the DiskSection's disk, ovf:transport with both
com.vmware.guestInfo and iso, ExtraConfig disk.EnableUUID=TRUE; the
ProductSection declares every property the appliance reads, each
userConfigurable with a Label and a Description; the disk is a
streamOptimized VMDK (sparse extent header "KDMV", version 3, compressed
grains, createType in its embedded descriptor) whose capacity is the
DiskSection's.
"""
import hashlib
import re
import struct
import sys
import xml.etree.ElementTree as ET

OVF = "http://schemas.dmtf.org/ovf/envelope/1"
RASD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
VSSD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
VMW = "http://www.vmware.com/schema/ovf"

# The OVF properties issue 11 names: the appliance's interface.
PROPERTIES = [
    "ferry.repository", "ferry.tls.ca", "ferry.tls.cert", "ferry.tls.key",
    "ferry.control.listen", "ferry.control.allowedClients", "ferry.vcenter.server",
    "ferry.vcenter.thumbprint", "ferry.vcenter.user", "ferry.vcenter.password",
    "network.hostname", "network.address", "network.gateway", "network.dns",
    "appliance.sshAuthorizedKey",
]
SECRETS = {"ferry.tls.key", "ferry.vcenter.password"}


class Bad(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Bad(msg)


def q(ns, tag):
    return f"{{{ns}}}{tag}"


def read_members(path):
    """The tar's members as (name, offset, size), reading raw headers."""
    members = []
    with open(path, "rb") as f:
        off = 0
        while True:
            f.seek(off)
            h = f.read(512)
            check(len(h) == 512, f"truncated tar header at {off}")
            if h == b"\0" * 512:
                break
            check(h[257:263] == b"ustar\0" and h[263:265] == b"00",
                  f"member at {off} is not a USTAR header (magic {h[257:265]!r})")
            stored = int(h[148:156].split(b"\0")[0].strip() or b"0", 8)
            calc = sum(h[:148]) + 8 * 32 + sum(h[156:])
            check(stored == calc, f"header checksum at {off}: {stored} != {calc}")
            check(h[156:157] in (b"0", b"\0"), f"member at {off} is not a regular file")
            name = (h[345:500].rstrip(b"\0") + b"/" if h[345] else b"") + h[0:100].rstrip(b"\0")
            size = int(h[124:136].split(b"\0")[0].strip() or b"0", 8)
            members.append((name.decode(), off + 512, size))
            off += 512 + (size + 511) // 512 * 512
    return members


def digest(path, off, size):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(off)
        left = size
        while left:
            b = f.read(min(left, 1 << 20))
            check(b, "short read")
            h.update(b)
            left -= len(b)
    return h.hexdigest()


def read_at(path, off, size):
    with open(path, "rb") as f:
        f.seek(off)
        return f.read(size)


def main(path):
    try:
        members = read_members(path)
    except FileNotFoundError:
        raise Bad(f"{path} does not exist: run scripts/appliance first")
    names = [m[0] for m in members]
    check(len(members) >= 3, f"{len(members)} members: {names}")
    check(names[0].endswith(".ovf"), f"first member is {names[0]}, not the .ovf")
    check(names[1] == names[0][:-4] + ".mf", f"second member is {names[1]}, not the .mf")
    by_name = {n: (o, s) for n, o, s in members}
    check(len(by_name) == len(members), "a member name appears twice")
    ovf_bytes = read_at(path, members[0][1], members[0][2])
    mf = read_at(path, members[1][1], members[1][2]).decode()

    root = ET.fromstring(ovf_bytes)
    check(root.tag == q(OVF, "Envelope"), f"root element {root.tag} is not an OVF 1.x Envelope")
    refs = root.findall(f"{q(OVF, 'References')}/{q(OVF, 'File')}")
    check(refs, "no References/File")
    files = {}
    for r in refs:
        href, fid = r.get(q(OVF, "href")), r.get(q(OVF, "id"))
        check(href in by_name, f"References names {href}, which is not in the .ova")
        size = int(r.get(q(OVF, "size")))
        check(size == by_name[href][1], f"{href}: ovf:size {size} != member size {by_name[href][1]}")
        files[fid] = href
    check(names[2:] == [r.get(q(OVF, "href")) for r in refs],
          f"members after the .mf {names[2:]} are not the References in order")

    lines = [ln for ln in mf.splitlines() if ln.strip()]
    sums = {}
    for ln in lines:
        m = re.fullmatch(r"SHA256\((.+)\)= ([0-9a-f]{64})", ln)
        check(m, f"manifest line is not SHA256(name)= hex: {ln!r}")
        sums[m.group(1)] = m.group(2)
    want = set(names) - {names[1]}
    check(set(sums) == want, f"manifest covers {sorted(sums)}, not {sorted(want)}")
    for n in sums:
        o, s = by_name[n]
        check(digest(path, o, s) == sums[n], f"SHA256 of {n} does not match the manifest")

    disks = root.findall(f"{q(OVF, 'DiskSection')}/{q(OVF, 'Disk')}")
    check(len(disks) == 1, f"{len(disks)} disks in DiskSection")
    disk = disks[0]
    check(disk.get(q(OVF, "fileRef")) in files, "the Disk's fileRef names no File")
    check(disk.get(q(OVF, "format")).endswith("#streamOptimized"), "disk format is not streamOptimized")
    capacity = int(disk.get(q(OVF, "capacity")))
    units = disk.get(q(OVF, "capacityAllocationUnits"), "byte")
    check(units == "byte", f"capacityAllocationUnits {units}")
    disk_id = disk.get(q(OVF, "diskId"))

    vs = root.find(q(OVF, "VirtualSystem"))
    check(vs is not None, "no VirtualSystem")
    vhs = vs.find(q(OVF, "VirtualHardwareSection"))
    check(vhs is not None, "no VirtualHardwareSection")
    transport = (vhs.get(q(OVF, "transport")) or "").split()
    check("com.vmware.guestInfo" in transport and "iso" in transport,
          f"ovf:transport is {transport}, want com.vmware.guestInfo and iso")
    fam = vhs.findtext(f"{q(OVF, 'System')}/{q(VSSD, 'VirtualSystemType')}") or ""
    m = re.fullmatch(r"vmx-(\d+)", fam.strip())
    check(m and int(m.group(1)) >= 14, f"hardware family {fam!r}, want vmx-14 or later")
    items = []
    for it in vhs.findall(q(OVF, "Item")):
        d = {c.tag.split("}")[1]: (c.text or "").strip() for c in it if c.tag.startswith("{" + RASD)}
        check("ResourceType" in d and "InstanceID" in d and "ElementName" in d,
              f"Item without ResourceType/InstanceID/ElementName: {d}")
        items.append(d)
    ids = [d["InstanceID"] for d in items]
    check(len(set(ids)) == len(ids), "InstanceIDs repeat")

    def of_type(t):
        return [d for d in items if d["ResourceType"] == str(t)]
    cpu, mem = of_type(3), of_type(4)
    check(len(cpu) == 1 and cpu[0].get("VirtualQuantity") == "2", f"CPU items {cpu}")
    check(len(mem) == 1 and mem[0].get("VirtualQuantity") == "2048" and
          mem[0].get("AllocationUnits") == "byte * 2^20", f"memory items {mem}")
    scsi = of_type(6)
    check(len(scsi) == 1 and scsi[0].get("ResourceSubType") == "VirtualSCSI",
          f"SCSI controllers {scsi}, want one paravirtual (VirtualSCSI)")
    nics = of_type(10)
    check(len(nics) == 1 and nics[0].get("ResourceSubType", "").lower() == "vmxnet3",
          f"NICs {nics}, want one vmxnet3")
    networks = {n.get(q(OVF, "name")) for n in root.findall(f"{q(OVF, 'NetworkSection')}/{q(OVF, 'Network')}")}
    check(nics[0].get("Connection") in networks, "the NIC's Connection is not a NetworkSection network")
    hds = of_type(17)
    check(len(hds) == 1, f"{len(hds)} disks in the hardware")
    check(hds[0].get("Parent") == scsi[0]["InstanceID"], "the boot disk is not on the paravirtual controller")
    check(hds[0].get("HostResource") in (f"ovf:/disk/{disk_id}", f"/disk/{disk_id}"),
          f"the disk's HostResource {hds[0].get('HostResource')} is not the DiskSection's disk")
    cds = of_type(15)
    check(len(cds) == 1, "no CD drive for the iso transport")
    check(any(d["InstanceID"] == cds[0].get("Parent") for d in of_type(5) + of_type(6)),
          "the CD drive's Parent is no controller")
    for d in items:
        if "Parent" in d:
            check(d["Parent"] in ids, f"Item {d['InstanceID']}: Parent {d['Parent']} is not an Item")
    extra = {e.get(q(VMW, "key")): e.get(q(VMW, "value")) for e in vhs.findall(q(VMW, "ExtraConfig"))}
    check(extra.get("disk.EnableUUID") == "TRUE", f"ExtraConfig disk.EnableUUID is {extra.get('disk.EnableUUID')}")

    ps = vs.find(q(OVF, "ProductSection"))
    check(ps is not None, "no ProductSection")
    check(ps.get(q(OVF, "class")) is None, "ProductSection has a class: keys would be prefixed")
    props = {}
    for p in ps.findall(q(OVF, "Property")):
        key = p.get(q(OVF, "key"))
        check(key not in props, f"property {key} declared twice")
        props[key] = p
    for key in PROPERTIES:
        check(key in props, f"ProductSection lacks property {key}")
        p = props[key]
        check(p.get(q(OVF, "userConfigurable")) == "true", f"{key} is not userConfigurable")
        check(p.get(q(OVF, "type")) == "string", f"{key}: ovf:type {p.get(q(OVF, 'type'))}")
        check((p.findtext(q(OVF, "Label")) or "").strip(), f"{key} has no Label")
        check((p.findtext(q(OVF, "Description")) or "").strip(), f"{key} has no Description")
        if key in SECRETS:
            check(p.get(q(OVF, "password")) == "true", f"{key} is not ovf:password")
    check(set(props) == set(PROPERTIES), f"properties not read by the appliance: {set(props) - set(PROPERTIES)}")
    check(props["ferry.control.listen"].get(q(OVF, "value")) == "0.0.0.0:7301",
          "ferry.control.listen's default is not 0.0.0.0:7301")

    vmdk_name = files[disk.get(q(OVF, "fileRef"))]
    o, s = by_name[vmdk_name]
    hdr = read_at(path, o, 512)
    magic, version, flags, cap_sectors = struct.unpack_from("<IIIQ", hdr, 0)
    check(magic == 0x564D444B, f"{vmdk_name} is not a sparse VMDK (magic {magic:#x})")
    check(version == 3, f"{vmdk_name}: sparse header version {version}, ESXi's streamOptimized is 3")
    check(flags & (1 << 16) and flags & (1 << 17), f"{vmdk_name}: grains not compressed with markers")
    check(cap_sectors * 512 == capacity, f"VMDK capacity {cap_sectors * 512} != DiskSection {capacity}")
    desc_off, desc_size = struct.unpack_from("<QQ", hdr, 28)
    desc = read_at(path, o + desc_off * 512, desc_size * 512).split(b"\0")[0].decode()
    check('createType="streamOptimized"' in desc, "VMDK descriptor is not createType streamOptimized")
    print(f"ok: {path}: {len(members)} members in order ({', '.join(names)}), digests match, "
          f"{fam}, {len(items)} hardware items, {len(props)} properties, "
          f"VMDK v3 streamOptimized of {capacity >> 30} GiB ({s >> 20} MiB)")


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except Bad as e:
        print(f"FAIL: {sys.argv[1]}: {e}", file=sys.stderr)
        sys.exit(1)
