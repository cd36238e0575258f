#!/usr/bin/env bash
# The vsphere client against a misbehaving HTTPS server (hostile_server.py):
# stalls, HTML, 300 MB responses, malformed and hostile XML. Also the CA
# file and thumbprint checks against a certificate made here.
HERE=$(cd "$(dirname "$0")" && pwd)
exec bash "$HERE/../tools/hostile_https.sh" "$HERE/hostile_server.py" test_vs_hostile --pass-cert
