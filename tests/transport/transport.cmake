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
