# Short and per build tree: admin socket paths below it must stay under
# 107 bytes (ceph-up allows at most 80 for the directory).
string(MD5 FERRY_CEPH_HASH "${CMAKE_BINARY_DIR}")
string(SUBSTRING "${FERRY_CEPH_HASH}" 0 10 FERRY_CEPH_HASH)
set(FERRY_CEPH_DIR /tmp/ferry-ceph-${FERRY_CEPH_HASH})

# The S3 client's tests (label "s3"): s3tool, a command line over s3/s3.h
# for tests only, against tests/s3/s3fake.py, a fake S3 server that checks
# every request's signature and scripts faults (503 SlowDown, connection
# resets, clock skew). Included by tests/CMakeLists.txt, so paths are
# relative to tests/.
add_executable(s3tool s3/s3tool.c)
target_link_libraries(s3tool PRIVATE ferry_s3)
set_target_properties(s3tool PROPERTIES
  RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)

add_test(NAME s3.client COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/s3/client.sh)
set_tests_properties(s3.client PROPERTIES
  LABELS "s3" TIMEOUT 300 SKIP_RETURN_CODE 77
  ENVIRONMENT "S3TOOL=${CMAKE_BINARY_DIR}/tests/s3tool;S3FAKE=${CMAKE_CURRENT_SOURCE_DIR}/s3/s3fake.py")

# The same client against a real radosgw (tests/s3/ceph-up): skipped
# without Ceph's daemons or boto3.
add_test(NAME s3.radosgw COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/s3/radosgw.sh)
set_tests_properties(s3.radosgw PROPERTIES
  LABELS "s3;ceph" TIMEOUT 400 SKIP_RETURN_CODE 77
  FIXTURES_REQUIRED ceph RESOURCE_LOCK ceph
  ENVIRONMENT "S3TOOL=${CMAKE_BINARY_DIR}/tests/s3tool;CEPH_ENV=${FERRY_CEPH_DIR}/env")

# The repository in a bucket (format 3) against one Ceph cluster that the
# fixture s3.ceph_up starts and s3.ceph_down stops; the tests that use it
# take it in turn (RESOURCE_LOCK), since one of them restarts radosgw.
add_test(NAME s3.ceph_up COMMAND bash -c
  "'${CMAKE_CURRENT_SOURCE_DIR}/s3/ceph-down' --purge '${FERRY_CEPH_DIR}' >/dev/null 2>&1; rm -rf '${FERRY_CEPH_DIR}' && '${CMAKE_CURRENT_SOURCE_DIR}/s3/ceph-up' '${FERRY_CEPH_DIR}'")
set_tests_properties(s3.ceph_up PROPERTIES FIXTURES_SETUP ceph LABELS "s3;ceph"
  TIMEOUT 200)
add_test(NAME s3.ceph_down COMMAND
  ${CMAKE_CURRENT_SOURCE_DIR}/s3/ceph-down --purge ${FERRY_CEPH_DIR})
set_tests_properties(s3.ceph_down PROPERTIES FIXTURES_CLEANUP ceph LABELS "s3;ceph"
  TIMEOUT 120)
function(ferry_s3_test name)
  add_test(NAME s3.${name} COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/s3/${name}.sh)
  set_tests_properties(s3.${name} PROPERTIES
    LABELS "s3;ceph" TIMEOUT 600 FIXTURES_REQUIRED ceph RESOURCE_LOCK ceph
    ENVIRONMENT "BIN=${CMAKE_BINARY_DIR}/bin;TOOLS=${CMAKE_CURRENT_SOURCE_DIR}/tools;CEPH_ENV=${FERRY_CEPH_DIR}/env;CEPH_DIR=${FERRY_CEPH_DIR}")
endfunction()
ferry_s3_test(repo)
ferry_s3_test(faults)
ferry_s3_test(tls)
