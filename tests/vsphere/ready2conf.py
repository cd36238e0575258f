#!/usr/bin/env python3
"""Turns ferry-vcsim's ready file into a Ferry config for the tests: the
ferry.vcenter.* keys, and every field of the ready file flattened under
"test." (test.vms.vm-two-disks.moref, test.control, ...).

usage: ready2conf.py READY_JSON DIR > CONF   (writes DIR/password, 0600)
"""
import json
import os
import sys


def flatten(prefix, value, out):
    if isinstance(value, dict):
        for k, v in value.items():
            flatten(prefix + "." + str(k), v, out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            flatten(prefix + "." + str(i), v, out)
        out.append((prefix + ".count", str(len(value))))
    else:
        if isinstance(value, bool):
            value = "true" if value else "false"
        out.append((prefix, str(value)))


def main():
    ready = json.load(open(sys.argv[1]))
    d = sys.argv[2]
    pw = os.path.join(d, "password")
    fd = os.open(pw, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, (ready["password"] + "\n").encode())
    os.close(fd)
    print("ferry.vcenter.server=" + ready["url"])
    print("ferry.vcenter.user=" + ready["username"])
    print("ferry.vcenter.passwordFile=" + pw)
    print("ferry.vcenter.thumbprint=" + ready["thumbprint"])
    print("ferry.vcenter.prepareRetries=2")
    print("ferry.vcenter.prepareRetrySeconds=1")
    print("ferry.vcenter.taskTimeoutSeconds=120")
    out = []
    flatten("test", {k: v for k, v in ready.items() if k != "password"}, out)
    for k, v in out:
        if "\n" not in v:
            print(k + "=" + v)


main()
