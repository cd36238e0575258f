# Integration tests: shell scripts driving the real binaries on loopback.
# Exit code 77 means skipped (a loop device needs root).
function(ferry_integration_test name)
  add_test(NAME integration.${name}
    COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/integration/${name}.sh)
  set_tests_properties(integration.${name} PROPERTIES
    LABELS integration TIMEOUT 300 SKIP_RETURN_CODE 77
    ENVIRONMENT "BIN=${CMAKE_BINARY_DIR}/bin;TOOLS=${CMAKE_CURRENT_SOURCE_DIR}/tools")
endfunction()

ferry_integration_test(roundtrip)
ferry_integration_test(hostile)
ferry_integration_test(crash)
ferry_integration_test(crash_gc)
ferry_integration_test(packs)
ferry_integration_test(no_space)
# The same crashes on a format 1 repository (a file per block).
add_test(NAME integration.crash_format1
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/integration/crash.sh)
set_tests_properties(integration.crash_format1 PROPERTIES
  LABELS integration TIMEOUT 300 SKIP_RETURN_CODE 77
  ENVIRONMENT "BIN=${CMAKE_BINARY_DIR}/bin;TOOLS=${CMAKE_CURRENT_SOURCE_DIR}/tools;REPO_FORMAT=1")
ferry_integration_test(repo_ops)
ferry_integration_test(loopdev)
ferry_integration_test(nbd_source)
ferry_integration_test(authz)
ferry_integration_test(legacy)
ferry_integration_test(hello_limits)
ferry_integration_test(forgery_vm)
ferry_integration_test(mount)
ferry_integration_test(file_restore)
ferry_integration_test(progress)
ferry_integration_test(restore_order)
ferry_integration_test(stalled_reader)
# VM configuration records (issue 13) against ferry-vcsim; 77 without it.
ferry_integration_test(vm_config)
set_tests_properties(integration.vm_config PROPERTIES LABELS "integration;vcsim")
# The whole-VM restore (issue 13) into ferry-vcsim.
ferry_integration_test(restore_vm)
set_tests_properties(integration.restore_vm PROPERTIES LABELS "integration;vcsim")
ferry_integration_test(list_pages)
