#!/usr/bin/env python3
"""Minimal vSphere SOAP calls the hotadd tests make behind the agent's back.

usage: soap.py READY_JSON detach PROXY_MOREF DEVICE_KEY
       soap.py READY_JSON fill PROXY_MOREF CONTROLLER_KEY
       soap.py READY_JSON cbt VM_MOREF
       soap.py READY_JSON disabled VM_MOREF
       soap.py READY_JSON snapshot VM_MOREF NAME

snapshot: takes a snapshot (not Ferry's) and prints its moref.
disabled: prints the VM's disabledMethod, one a line (RelocateVM_Task while
a PrepareForAccess holds it).

detach: ReconfigVM_Task remove of one disk, without fileOperation (what an
admin does in the vSphere client). fill: adds small disks of the proxy's own
(fileOperation=create, in its folder) on every free unit of a controller.
"""
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import vsoap  # noqa: E402

S = vsoap.Session(sys.argv[1])


def wait(task_xml):
    task = re.search(r"<returnval[^>]*>([^<]+)</returnval>", task_xml).group(1)
    for _ in range(300):
        out = S.call('<RetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">'
                     'propertyCollector</_this><specSet><propSet><type>Task</type><pathSet>'
                     'info.state</pathSet></propSet><objectSet><obj type="Task">%s</obj>'
                     '</objectSet></specSet><options/></RetrievePropertiesEx>' % task)
        state = re.search(r"<val[^>]*>([a-z]+)</val>", out).group(1)
        if state == "success":
            return
        if state == "error":
            sys.exit("task %s failed: %s" % (task, out))
        time.sleep(0.1)
    sys.exit("task %s did not finish" % task)


vm = sys.argv[3]
if sys.argv[2] == "disabled":
    out = S.call('<RetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">'
                 'propertyCollector</_this><specSet><propSet><type>VirtualMachine</type><pathSet>'
                 'disabledMethod</pathSet></propSet><objectSet><obj type="VirtualMachine">%s</obj>'
                 '</objectSet></specSet><options/></RetrievePropertiesEx>' % vm)
    for m in re.findall(r"<string[^>]*>([^<]+)</string>", out):
        print(m)
    sys.exit(0)
if sys.argv[2] == "snapshot":
    wait(S.call('<CreateSnapshot_Task xmlns="urn:vim25"><_this type="VirtualMachine">%s</_this>'
                '<name>%s</name><description>by the test</description><memory>false</memory>'
                '<quiesce>false</quiesce></CreateSnapshot_Task>' % (vm, sys.argv[4])))
    out = S.call('<RetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">'
                 'propertyCollector</_this><specSet><propSet><type>VirtualMachine</type><pathSet>'
                 'snapshot.currentSnapshot</pathSet></propSet><objectSet><obj type="VirtualMachine">'
                 '%s</obj></objectSet></specSet><options/></RetrievePropertiesEx>' % vm)
    print(re.search(r"<val[^>]*>([^<]+)</val>", out).group(1))
    sys.exit(0)
if sys.argv[2] == "detach":
    change = ('<deviceChange><operation>remove</operation><device xsi:type="VirtualDisk">'
              '<key>%s</key><controllerKey>0</controllerKey><capacityInKB>0</capacityInKB>'
              '</device></deviceChange>' % sys.argv[4])
elif sys.argv[2] == "fill":
    change = ""
    for unit in [u for u in range(1, 16) if u != 7]:
        change += ('<deviceChange><operation>add</operation><fileOperation>create</fileOperation>'
                   '<device xsi:type="VirtualDisk"><key>%d</key><backing xsi:type="VirtualDiskFlat'
                   'Ver2BackingInfo"><fileName>[ds1] ferry-proxy/fill-%d.vmdk</fileName><diskMode>'
                   'persistent</diskMode><thinProvisioned>true</thinProvisioned></backing>'
                   '<controllerKey>%s</controllerKey><unitNumber>%d</unitNumber><capacityInKB>1024'
                   '</capacityInKB></device></deviceChange>' % (-100 - unit, unit, sys.argv[4], unit))
elif sys.argv[2] == "cbt":
    change = "<changeTrackingEnabled>true</changeTrackingEnabled>"
elif sys.argv[2] == "cbt-off":
    change = "<changeTrackingEnabled>false</changeTrackingEnabled>"
else:
    sys.exit(__doc__)
wait(S.call('<ReconfigVM_Task xmlns="urn:vim25"><_this type="VirtualMachine">%s</_this>'
            '<spec>%s</spec></ReconfigVM_Task>' % (vm, change)))
