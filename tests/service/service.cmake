# Agent service tests: the real `ferry-agent run` driven by the real `ferry`
# client over mutual TLS (docs/CONTROL.md). Included by tests/CMakeLists.txt
# (paths relative to tests/); label "service".
#   ctest -R service
# tls, hostile and reload need neither root nor the simulator; the others
# run jobs against ferry-vcsim with an emulated proxy guest like the hotadd
# tests (root: loop devices; exit 77, skipped, otherwise).
function(ferry_service_test name)
  add_test(NAME service.${name}
    COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/service/${name}.sh)
  set_tests_properties(service.${name} PROPERTIES
    LABELS service TIMEOUT 300 SKIP_RETURN_CODE 77
    ENVIRONMENT "BIN=${CMAKE_BINARY_DIR}/bin;TOOLS=${CMAKE_CURRENT_SOURCE_DIR}/tools;VCSIM=${CMAKE_BINARY_DIR}/bin/ferry-vcsim")
endfunction()

# The control protocol's messages and bounds (no network).
add_executable(test_control service/test_control.c)
target_link_libraries(test_control PRIVATE ferry_agent)
set_target_properties(test_control PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
add_test(NAME service.messages COMMAND test_control)
set_tests_properties(service.messages PROPERTIES LABELS "service;unit" TIMEOUT 60)

ferry_service_test(tls)
ferry_service_test(hostile)
ferry_service_test(reload)
ferry_service_test(unauthenticated)
ferry_service_test(cert_refusals)

if(NOT TARGET ferry-vcsim)
  message(STATUS "service tests: ferry-vcsim is not built; skipping the job tests")
  return()
endif()
ferry_service_test(backup)
ferry_service_test(cancel)
ferry_service_test(sigterm)
ferry_service_test(two_jobs)
ferry_service_test(incremental)
ferry_service_test(client_gone)
ferry_service_test(cleanup)
ferry_service_test(restore_vm)
