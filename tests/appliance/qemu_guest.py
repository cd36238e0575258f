#!/usr/bin/env python3
"""Boots the Ferry proxy appliance from its own .ova in QEMU (TCG), as a
VMware VM looks to the guest, for the appliance tests and scripts/demo.

  qemu_guest.py boot --ova X.ova --dir DIR --env ovf-env.xml --uuid UUID --mac MAC
                     [--guestfwd GUEST_IP:PORT=HOST_PORT ...] [--hostfwd HOST_PORT=GUEST_PORT ...]
                     [--wait-serial TEXT] [--timeout SECONDS]
  qemu_guest.py qmp DIR COMMAND [JSON_ARGS]     one QMP command, prints the reply
  qemu_guest.py stop DIR                        quit QEMU (QMP), kill it if it lingers

What the guest gets, and what is emulated:
- its disk: the VMDK extracted from the .ova (the shipped artifact) under
  a qcow2 overlay in DIR, on a VMware paravirtual SCSI controller
  (-device pvscsi, QEMU's model of PVSCSI) at target 0;
- a vmxnet3 NIC with a VMware MAC on QEMU's user network with restrict=on:
  the guest reaches nothing but the guestfwd rules (each connection runs a
  loopback-only forwarder to 127.0.0.1:HOST_PORT) and is reached only
  through the hostfwd rules (bound to 127.0.0.1);
- SMBIOS type 1 as a VMware VM reports it (manufacturer "VMware, Inc.",
  product "VMware Virtual Platform", serial VMware-xx xx ...), -uuid;
- the OVF environment as an ISO 9660 CD holding ovf-env.xml (the OVF
  "iso" transport; QEMU's vmport has no guestinfo RPC);
- QMP sockets DIR/qmp.sock (for ferry-vcsim) and DIR/qmp-test.sock (for
  this script's qmp and stop), the serial console in DIR/serial.log,
  the pid in DIR/qemu.pid.
Boot: exit 0 once TEXT (default: the setup unit's "configured" line, or its
"NOT CONFIGURED") is on the serial console; 1 with the console's tail when
QEMU exits or the timeout passes first.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def extract_vmdk(ova, d):
    """The disk member of the .ova, extracted once per .ova version."""
    with tarfile.open(ova) as t:
        names = [m for m in t.getmembers() if m.name.endswith(".vmdk")]
        if len(names) != 1:
            raise SystemExit(f"{ova}: {len(names)} VMDKs")
        m = names[0]
        out = os.path.join(d, m.name)
        if not (os.path.exists(out) and os.path.getsize(out) == m.size and
                os.path.getmtime(out) >= os.path.getmtime(ova)):
            with t.extractfile(m) as src, open(out + ".tmp", "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.replace(out + ".tmp", out)
        return out


def make_iso(env, d):
    stage = os.path.join(d, "iso")
    shutil.rmtree(stage, ignore_errors=True)
    os.makedirs(stage)
    shutil.copy(env, os.path.join(stage, "ovf-env.xml"))
    iso = os.path.join(d, "ovf-env.iso")
    # Rock Ridge and Joliet keep the lower-case name, as vSphere's CD does.
    subprocess.run(["genisoimage", "-quiet", "-r", "-J", "-V", "OVF ENV", "-o", iso, stage],
                   check=True)
    return iso


def smbios_serial(uuid):
    h = uuid.replace("-", "").lower()
    pairs = [h[i:i + 2] for i in range(0, 32, 2)]
    return "VMware-" + " ".join(pairs[:8]) + "-" + " ".join(pairs[8:])


def qemu_command(a, vmdk_overlay, iso):
    d = os.path.abspath(a.dir)
    forwarder = os.path.join(HERE, "loopfwd.py")
    net = ["user", "id=net0", "restrict=on", "net=10.0.2.0/24", "host=10.0.2.2"]
    for g in a.guestfwd:
        guest, port = g.split("=")
        # One forwarder per guest connection, to loopback only.
        net.append(f"guestfwd=tcp:{guest}-cmd:{sys.executable} {forwarder} {int(port)}")
    for h in a.hostfwd:
        host, guest = h.split("=")
        net.append(f"hostfwd=tcp:127.0.0.1:{int(host)}-:{int(guest)}")
    smbios = ("type=1,manufacturer=VMware,, Inc.,product=VMware Virtual Platform,"
              f"version=None,serial={smbios_serial(a.uuid)},uuid={a.uuid}")
    return [
        "qemu-system-x86_64", "-accel", "tcg", "-machine", "pc", "-cpu", "max",
        "-smp", str(a.cpus), "-m", str(a.memory), "-nodefaults", "-no-user-config",
        "-display", "none", "-serial", f"file:{d}/serial.log",
        "-uuid", a.uuid, "-smbios", smbios, "-name", "ferry-proxy",
        "-device", "pvscsi,id=scsi0",
        "-blockdev", f"driver=qcow2,node-name=boot,file.driver=file,file.filename={vmdk_overlay}",
        "-device", "scsi-hd,bus=scsi0.0,scsi-id=0,lun=0,drive=boot,bootindex=0",
        "-blockdev", f"driver=raw,node-name=ovfenv,read-only=on,file.driver=file,file.filename={iso}",
        "-device", "ide-cd,bus=ide.1,unit=0,drive=ovfenv",
        "-netdev", ",".join(net),
        "-device", f"vmxnet3,id=nic0,netdev=net0,mac={a.mac}",
        # Two QMP monitors: qmp.sock for ferry-vcsim (the hypervisor's
        # side), qmp-test.sock for the harness (reset, quit); QEMU serves
        # one client per monitor.
        "-qmp", f"unix:{d}/qmp.sock,server=on,wait=off",
        "-qmp", f"unix:{d}/qmp-test.sock,server=on,wait=off",
        "-pidfile", f"{d}/qemu.pid", "-daemonize",
    ]


def boot(a):
    os.makedirs(a.dir, exist_ok=True)
    d = os.path.abspath(a.dir)
    vmdk = extract_vmdk(os.path.abspath(a.ova), d)
    overlay = os.path.join(d, "boot.qcow2")
    if os.path.exists(overlay):
        os.unlink(overlay)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "vmdk", "-b", vmdk, overlay],
                   check=True)
    iso = make_iso(a.env, d)
    serial = os.path.join(d, "serial.log")
    if os.path.exists(serial):
        os.unlink(serial)
    t0 = time.monotonic()
    subprocess.run(qemu_command(a, overlay, iso), check=True)
    if a.no_wait:
        return 0
    return wait_serial(d, a.wait_serial, a.timeout, t0)


def wait_serial(d, texts, timeout, t0=None):
    t0 = t0 or time.monotonic()
    serial = os.path.join(d, "serial.log")
    pid = int(open(os.path.join(d, "qemu.pid")).read())
    while time.monotonic() - t0 < timeout:
        try:
            log = open(serial, errors="replace").read()
        except FileNotFoundError:
            log = ""
        for t in texts:
            if t in log:
                print(f"boot: '{t}' after {time.monotonic() - t0:.1f} s")
                return 0
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            print("boot: QEMU exited; console:\n" + log[-4000:], file=sys.stderr)
            return 1
        time.sleep(0.5)
    log = open(serial, errors="replace").read() if os.path.exists(serial) else ""
    print(f"boot: none of {texts} within {timeout} s; console:\n" + log[-4000:], file=sys.stderr)
    return 1


class QMP:
    def __init__(self, path, timeout=30):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.f = self.s.makefile("rwb")
        self.events = []
        json.loads(self.f.readline())  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, args=None):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.f.write(json.dumps(msg).encode() + b"\n")
        self.f.flush()
        while True:
            line = self.f.readline()
            if not line:
                raise SystemExit("QMP connection closed")
            r = json.loads(line)
            if "event" in r:
                self.events.append(r)
                continue
            if "error" in r:
                raise RuntimeError(f"QMP {name}: {r['error'].get('desc')}")
            return r.get("return")


def qmp(a):
    q = QMP(os.path.join(a.dir, "qmp-test.sock"))
    r = q.cmd(a.command, json.loads(a.args) if a.args else None)
    print(json.dumps(r))


def stop(a):
    pidfile = os.path.join(a.dir, "qemu.pid")
    try:
        pid = int(open(pidfile).read())
    except (FileNotFoundError, ValueError):
        return 0
    try:
        QMP(os.path.join(a.dir, "qmp-test.sock"), timeout=5).cmd("quit")
    except Exception:
        pass
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return 0
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="what", required=True)
    b = sub.add_parser("boot")
    b.add_argument("--ova", required=True)
    b.add_argument("--dir", required=True)
    b.add_argument("--env", required=True)
    b.add_argument("--uuid", required=True)
    b.add_argument("--mac", required=True)
    b.add_argument("--cpus", type=int, default=2)
    b.add_argument("--memory", type=int, default=2048)
    b.add_argument("--guestfwd", action="append", default=[])
    b.add_argument("--hostfwd", action="append", default=[])
    b.add_argument("--wait-serial", action="append", default=[])
    b.add_argument("--timeout", type=float, default=300)
    b.add_argument("--no-wait", action="store_true", help="return once QEMU runs")
    q = sub.add_parser("qmp")
    q.add_argument("dir")
    q.add_argument("command")
    q.add_argument("args", nargs="?")
    s = sub.add_parser("stop")
    s.add_argument("dir")
    w = sub.add_parser("wait")
    w.add_argument("dir")
    w.add_argument("--wait-serial", action="append", default=[])
    w.add_argument("--timeout", type=float, default=300)
    a = ap.parse_args()
    if a.what == "wait":
        a.wait_serial = a.wait_serial or ["ferry-appliance-setup: configured",
                                          "ferry-appliance-setup: NOT CONFIGURED"]
    if a.what == "boot":
        a.wait_serial = a.wait_serial or ["ferry-appliance-setup: configured",
                                          "ferry-appliance-setup: NOT CONFIGURED"]
        return boot(a)
    if a.what == "qmp":
        return qmp(a)
    if a.what == "wait":
        return wait_serial(os.path.abspath(a.dir), a.wait_serial, a.timeout)
    return stop(a)


if __name__ == "__main__":
    sys.exit(main())
