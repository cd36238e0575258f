#!/usr/bin/env python3
"""Writes the Ferry proxy appliance's OVF descriptor, manifest and .ova.

  mkova.py --version V --disk DISK.vmdk --capacity BYTES --populated BYTES --out X.ova

The .ova is a USTAR tar holding, in this order, the .ovf descriptor, the
.mf manifest (one `SHA256(name)= hex` line per other file) and the disk,
which is the order vSphere's deploy wizard and ovftool read it in. Every
member's time is SOURCE_DATE_EPOCH, owner 0:0, mode 0644: the same inputs
give the same archive.

PROPERTIES below is the one list of the appliance's OVF properties; the
first-boot parser (`ferry-agent ovf-env`, agent/ovf_env.c) knows the same
keys, and tests/appliance/check_ova.py checks that every one is here.
"""
import argparse
import hashlib
import io
import os
import tarfile
from xml.sax.saxutils import quoteattr, escape

# key, default, label, description, password
PROPERTIES = [
    ("ferry.repository", "", "Repository (HOST:PORT)",
     "The ferry-repo server this proxy sends backups to, as host:port "
     "(for example repo.example.com:7300). Required.", False),
    ("ferry.tls.ca", "", "CA certificate (base64 of the PEM file)",
     "The certificate authority that signed the repository's, this agent's and the "
     "central backup server's certificates: the PEM file encoded as base64 on one "
     "line (base64 -w0 ca.crt). Required.", False),
    ("ferry.tls.cert", "", "Agent certificate (base64 of the PEM file)",
     "This proxy's certificate, signed by that CA (ferry ca issue NAME --role agent), as base64 on one "
     "line. Required.", False),
    ("ferry.tls.key", "", "Agent private key (base64 of the PEM file)",
     "The private key of the agent certificate, as base64 on one line. It must match "
     "the certificate; it is stored readable by root only. Required.", True),
    ("ferry.control.listen", "0.0.0.0:7301", "Control API address (ADDRESS:PORT)",
     "Where the agent listens for the central backup server (mutual TLS with the "
     "certificates above).", False),
    ("ferry.control.allowedClients", "", "Allowed control clients",
     "Certificate common names allowed to drive this agent, comma separated. Empty: "
     "any certificate signed by the CA with role controller or admin.", False),
    ("ferry.vcenter.server", "", "vCenter server",
     "The vCenter this proxy's VM is registered in: a host name, host:port or "
     "https://host/sdk. Required.", False),
    ("ferry.vcenter.thumbprint", "", "vCenter certificate thumbprint (SHA-256)",
     "The SHA-256 thumbprint of vCenter's certificate (hex, colons allowed). Empty: "
     "the certificate must chain to a CA this system trusts.", False),
    ("ferry.vcenter.user", "", "vCenter user",
     "The vCenter user backups run as (for example backup@vsphere.local). Required.",
     False),
    ("ferry.vcenter.password", "", "vCenter password",
     "That user's password. Stored readable by root only.", True),
    ("network.hostname", "ferry-proxy", "Host name",
     "This proxy's host name.", False),
    ("network.address", "", "IPv4 address (CIDR)",
     "This proxy's address with its prefix length, for example 192.0.2.10/24. "
     "Empty: DHCP.", False),
    ("network.gateway", "", "Default gateway",
     "The IPv4 default gateway, with a static address. Empty: none.", False),
    ("network.dns", "", "DNS servers",
     "IPv4 addresses of DNS servers, comma separated, with a static address.", False),
    ("appliance.sshAuthorizedKey", "", "SSH public key for root",
     "One OpenSSH public key line (ssh-ed25519 AAAA... comment) allowed to log in as "
     "root. SSH never accepts a password on this appliance; empty: no SSH login.", False),
]


def descriptor(version, disk_name, disk_size, capacity, populated):
    def prop(key, default, label, desc, password):
        pw = ' ovf:password="true"' if password else ""
        return (f'      <Property ovf:key={quoteattr(key)} ovf:type="string" '
                f'ovf:userConfigurable="true" ovf:value={quoteattr(default)}{pw}>\n'
                f'        <Label>{escape(label)}</Label>\n'
                f'        <Description>{escape(desc)}</Description>\n'
                f'      </Property>\n')

    def item(fields):
        # rasd elements in the order the CIM schema's sequence gives them
        # (alphabetical), which strict validators insist on.
        body = "".join(f"        <rasd:{k}>{escape(str(v))}</rasd:{k}>\n"
                       for k, v in sorted(fields.items()))
        return f"      <Item>\n{body}      </Item>\n"

    items = "".join([
        item({"AllocationUnits": "hertz * 10^6", "Description": "Number of virtual CPUs",
              "ElementName": "2 virtual CPU(s)", "InstanceID": 1, "ResourceType": 3,
              "VirtualQuantity": 2}),
        item({"AllocationUnits": "byte * 2^20", "Description": "Memory size",
              "ElementName": "2048 MB of memory", "InstanceID": 2, "ResourceType": 4,
              "VirtualQuantity": 2048}),
        item({"Address": 0, "Description": "SCSI controller (VMware paravirtual): the boot "
              "disk on unit 0, hot-added disks on the other units",
              "ElementName": "SCSI controller 0", "InstanceID": 3,
              "ResourceSubType": "VirtualSCSI", "ResourceType": 6}),
        item({"Address": 0, "Description": "IDE controller (the OVF environment CD)",
              "ElementName": "IDE controller 0", "InstanceID": 4, "ResourceType": 5}),
        item({"AddressOnParent": 0, "ElementName": "Hard disk 1",
              "HostResource": "ovf:/disk/vmdisk1", "InstanceID": 5, "Parent": 3,
              "ResourceType": 17}),
        item({"AddressOnParent": 0, "AutomaticAllocation": "false",
              "ElementName": "CD/DVD drive 1", "InstanceID": 6, "Parent": 4,
              "ResourceType": 15}),
        item({"AddressOnParent": 7, "AutomaticAllocation": "true",
              "Connection": "VM Network", "Description": "VMXNET3 network adapter",
              "ElementName": "Network adapter 1", "InstanceID": 7,
              "ResourceSubType": "VmxNet3", "ResourceType": 10}),
    ])
    props = "".join(prop(*p) for p in PROPERTIES)
    return f'''<?xml version="1.0" encoding="UTF-8"?>
<!-- Ferry backup proxy appliance {escape(version)} (scripts/appliance) -->
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"
    xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
    xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
    xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
    xmlns:vmw="http://www.vmware.com/schema/ovf"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
    <File ovf:href={quoteattr(disk_name)} ovf:id="file1" ovf:size="{disk_size}"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="{capacity}" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized" ovf:populatedSize="{populated}"/>
  </DiskSection>
  <NetworkSection>
    <Info>The logical networks</Info>
    <Network ovf:name="VM Network">
      <Description>The network on which the proxy reaches vCenter, the ESXi hosts, the repository and the central backup server</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="ferry-proxy">
    <Info>Ferry backup proxy: reads VM disks by hot-add and sends them to a Ferry repository</Info>
    <Name>ferry-proxy</Name>
    <OperatingSystemSection ovf:id="96" vmw:osType="debian10_64Guest">
      <Info>Debian 12 (64-bit)</Info>
      <Description>Debian GNU/Linux 12 (bookworm), 64-bit</Description>
    </OperatingSystemSection>
    <VirtualHardwareSection ovf:transport="com.vmware.guestInfo iso">
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>ferry-proxy</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-14</vssd:VirtualSystemType>
      </System>
{items}      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="bios"/>
      <vmw:Config ovf:required="false" vmw:key="tools.syncTimeWithHost" vmw:value="true"/>
      <vmw:ExtraConfig ovf:required="false" vmw:key="disk.EnableUUID" vmw:value="TRUE"/>
    </VirtualHardwareSection>
    <ProductSection ovf:required="false">
      <Info>Settings of the Ferry backup proxy, read on every boot</Info>
      <Product>Ferry backup proxy</Product>
      <Vendor>Ferry</Vendor>
      <Version>{escape(version)}</Version>
      <FullVersion>{escape(version)}</FullVersion>
      <Category>Repository and certificates</Category>
{props}    </ProductSection>
  </VirtualSystem>
</Envelope>
'''


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--version", required=True)
    ap.add_argument("--disk", required=True)
    ap.add_argument("--capacity", type=int, required=True)
    ap.add_argument("--populated", type=int, required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    base = os.path.basename(a.out)[:-len(".ova")]
    disk_name = os.path.basename(a.disk)
    disk_size = os.path.getsize(a.disk)
    ovf = descriptor(a.version, disk_name, disk_size, a.capacity, a.populated).encode()
    h = hashlib.sha256()
    with open(a.disk, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    mf = (f"SHA256({base}.ovf)= {hashlib.sha256(ovf).hexdigest()}\n"
          f"SHA256({disk_name})= {h.hexdigest()}\n").encode()

    def info(name, size):
        ti = tarfile.TarInfo(name)
        ti.size, ti.mtime, ti.mode = size, epoch, 0o644
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = ""
        return ti

    tmp = a.out + ".tmp"
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as t:
        t.addfile(info(base + ".ovf", len(ovf)), io.BytesIO(ovf))
        t.addfile(info(base + ".mf", len(mf)), io.BytesIO(mf))
        with open(a.disk, "rb") as f:
            t.addfile(info(disk_name, disk_size), f)
    os.replace(tmp, a.out)


if __name__ == "__main__":
    main()
