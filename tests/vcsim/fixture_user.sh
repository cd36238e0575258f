#!/usr/bin/env bash
# vcsim.fixture_user: a test that only has the ready file of a shared
# ferry-vcsim (the vcsim_selftest fixture) can log in, find a VM by its BIOS
# UUID and read a disk through /folder.
source "$(dirname "$0")/lib.sh"

: "${VCSIM_READY:?VCSIM_READY must name the ready file of the fixture}"
use_vcsim "$VCSIM_READY"
service_content
login
BIOS=$(json "R['vms']['ferry-proxy']['bios_uuid']")
soap "<FindByUuid xmlns=\"urn:vim25\"><_this type=\"SearchIndex\">$SEARCH</_this><uuid>$BIOS</uuid><vmSearch>true</vmSearch></FindByUuid>"
expect_ok
[[ "$(q text returnval)" == "$(json "R['vms']['ferry-proxy']['moref']")" ]] || fail "FindByUuid: $(q text returnval)"
CODE=$(curl -sS --cacert "$CERT" -b "$WORK/cookies" -o "$WORK/head.bin" -w '%{http_code}' -r 0-99 \
  "$BASE/folder/ferry-proxy/ferry-proxy-flat.vmdk?dcPath=$(json 'R["datacenter"]')&dsName=ds1")
[[ "$CODE" == 206 ]] && grep -q "ferry-vcsim vm=ferry-proxy disk=2000" "$WORK/head.bin" || fail "/folder answered $CODE"
echo "vcsim fixture_user: OK"
