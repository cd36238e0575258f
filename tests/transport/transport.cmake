# Transport tests (label "transport"): the VMDK descriptor parser, the
# https datastore source against ferry-vcsim and through ferry-agent, and
# the VDDK path with nbdkit's file plugin standing in for vddk. Included by
# tests/CMakeLists.txt, so paths are relative to tests/.
function(ferry_transport_program name)
  add_executable(${name} transport/${name}.c)
  target_link_libraries(${name} PRIVATE ${ARGN})
  set_target_properties(${name} PROPERTIES
    RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
endfunction()

ferry_transport_program(test_vmdk ferry_vsphere)
ferry_transport_program(test_ds_sim ferry_vsphere)
ferry_transport_program(test_ds_hostile ferry_vsphere)
ferry_transport_program(test_vddk ferry_nbd)

add_test(NAME transport.vmdk
  COMMAND test_vmdk ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_vmdk.seeds)
set_tests_properties(transport.vmdk PROPERTIES
  LABELS "transport;unit" TIMEOUT 60)

add_test(NAME transport.hostile
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/transport/hostile.sh)
set_tests_properties(transport.hostile PROPERTIES
  LABELS "transport;integration" TIMEOUT 120
  ENVIRONMENT "TESTS=${CMAKE_BINARY_DIR}/tests")

# test_vddk needs an empty directory of its own.
add_test(NAME transport.vddk
  COMMAND bash -c "command -v nbdkit >/dev/null || exit 77; d=$(mktemp -d) && trap 'rm -rf \"$d\"' EXIT && \"$0\" \"$d\""
          $<TARGET_FILE:test_vddk>)
set_tests_properties(transport.vddk PROPERTIES
  LABELS "transport;nbd" TIMEOUT 120 SKIP_RETURN_CODE 77)

set(FY_TRANSPORT_ENV
  "BIN=${CMAKE_BINARY_DIR}/bin;TESTS=${CMAKE_BINARY_DIR}/tests;TOOLS=${CMAKE_CURRENT_SOURCE_DIR}/tools;SRC=${CMAKE_SOURCE_DIR}")
add_test(NAME transport.https
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/transport/https.sh)
add_test(NAME transport.https_esx
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/transport/https.sh --esx)
set_tests_properties(transport.https transport.https_esx PROPERTIES
  LABELS "transport;integration" TIMEOUT 300 SKIP_RETURN_CODE 77
  ENVIRONMENT "${FY_TRANSPORT_ENV}")

# VM disks over the transport table's modes (agent/transport.c) against a
# ferry-vcsim of its own. The file is compiled in rather than linking the
# whole ferry_agent library: it needs only nbd, vsphere and hotadd.
add_executable(test_vm_transport transport/test_vm_transport.c
  ${CMAKE_SOURCE_DIR}/agent/transport.c)
target_link_libraries(test_vm_transport PRIVATE ferry_nbd ferry_vsphere ferry_hotadd ferry_san)
set_target_properties(test_vm_transport PROPERTIES
  RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
add_test(NAME transport.vm_disk
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/transport/vm_transport.sh)
add_test(NAME transport.vm_disk_esx
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/transport/vm_transport.sh --esx)
set_tests_properties(transport.vm_disk transport.vm_disk_esx PROPERTIES
  LABELS "transport;integration" TIMEOUT 300 SKIP_RETURN_CODE 77
  ENVIRONMENT "${FY_TRANSPORT_ENV}")

# A whole VM backup job over https (ferry-agent backup --vm), end to end.
add_test(NAME transport.vm_https
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/transport/vm_https.sh)
set_tests_properties(transport.vm_https PROPERTIES
  LABELS transport TIMEOUT 180 SKIP_RETURN_CODE 77
  ENVIRONMENT "BIN=${CMAKE_BINARY_DIR}/bin;TOOLS=${CMAKE_CURRENT_SOURCE_DIR}/tools;VCSIM=${CMAKE_BINARY_DIR}/bin/ferry-vcsim")

# PrepareForAccess advisory or required, and consolidation after the
# snapshot removal (agent/job.c), over https.
add_test(NAME transport.vm_access
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/transport/vm_access.sh)
set_tests_properties(transport.vm_access PROPERTIES
  LABELS transport TIMEOUT 300 SKIP_RETURN_CODE 77
  ENVIRONMENT "BIN=${CMAKE_BINARY_DIR}/bin;TOOLS=${CMAKE_CURRENT_SOURCE_DIR}/tools;VCSIM=${CMAKE_BINARY_DIR}/bin/ferry-vcsim")
