#!/usr/bin/env bash
# The https transport against a misbehaving /folder (hostile_folder.py):
# Range ignored, wrong Content-Range, too long, too short, stalled, 401s.
HERE=$(cd "$(dirname "$0")" && pwd)
exec bash "$HERE/../tools/hostile_https.sh" "$HERE/hostile_folder.py" test_ds_hostile
